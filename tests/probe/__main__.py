"""`python -m tests.probe PORT`: run the probe alone (the shutdown tests send it signals)."""

import asyncio
import signal
import sys

from shared.config import Settings
from shared.runner import serve
from shared.telemetry import configure_logging
from tests.probe.server import build


async def main(port: int) -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    kit = await build(settings, port=port)
    await serve([kit], stop, announce=lambda line: print(line, flush=True))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
