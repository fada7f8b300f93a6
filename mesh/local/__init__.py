"""Real local processes for development and tests: redis-server, MariaDB, the mesh."""
