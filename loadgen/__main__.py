import asyncio

from loadgen.run import main

asyncio.run(main())
