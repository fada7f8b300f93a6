"""The whole mesh on one machine, for development and tests: ``python -m launcher``.

The one place besides the auditor that knows every context: it starts them as
child processes with the servers they need (``mesh.local``: redis-server,
MariaDB, a RocketMQ broker). ``python -m launcher rocketmq`` runs only a broker
with the mesh's topics and groups.
"""
