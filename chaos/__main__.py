import asyncio

from chaos.cli import main

asyncio.run(main())
