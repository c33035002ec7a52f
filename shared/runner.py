"""Run one or several services in this process until SIGTERM or SIGINT.

Used by `python -m services` (the supervisor that `make run` starts) and by
`python -m services.<name>`. All servers bind first (health NOT_SERVING), then each runs its
start-up hooks and turns SERVING; a signal drains every server at once (see
`shared.server.GrpcService.drain`) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from shared.config import Settings
from shared.malloc import bound_malloc_retention
from shared.service import ServiceKit
from shared.telemetry import configure_logging

log = logging.getLogger("skybridge.runner")

Builder = Callable[[Settings], Awaitable[ServiceKit]]


def builder_for(service: str) -> Builder:
    """`services.<service>.server.build`."""
    return cast(Builder, importlib.import_module(f"services.{service}.server").build)


def available_services(names: Sequence[str]) -> list[str]:
    """The services among `names` whose package exists in this checkout."""
    found = []
    for name in names:
        try:
            importlib.import_module(f"services.{name}.server")
        except ModuleNotFoundError as error:
            if error.name in (f"services.{name}", f"services.{name}.server"):
                continue
            raise
        found.append(name)
    return found


async def serve(kits: Sequence[ServiceKit], stop: asyncio.Event,
                announce: Callable[[str], None] = print) -> None:
    """Start `kits`, wait for `stop`, then drain them all."""
    for kit in kits:
        await kit.server.start()
    try:
        await asyncio.gather(*(kit.server.become_ready() for kit in kits))
    except BaseException:
        log.exception("a service failed to start; stopping all of them")
        await asyncio.gather(*(kit.server.drain(0) for kit in kits), return_exceptions=True)
        raise
    for kit in kits:
        announce(f"{kit.name:<13} listening on {kit.settings.host}:{kit.server.port}")
        for line in getattr(kit, "banner", ()):  # the gateway: where the console is
            announce(line)
    await stop.wait()
    await asyncio.gather(*(kit.server.drain() for kit in kits))


async def main_async(services: Sequence[str], settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    kits = [await builder_for(name)(settings) for name in services]
    if not kits:
        print("no services to run", file=sys.stderr)
        return 1
    await serve(kits, stop, announce=lambda line: print(line, flush=True))
    return 0


def main(services: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    names = available_services(services if services is not None else settings.services)
    # A service whose server module sets BOUND_MALLOC frees large arrays per request: its
    # process keeps resident memory near the live data (see shared.malloc).
    if any(getattr(importlib.import_module(f"services.{name}.server"), "BOUND_MALLOC", False)
           for name in names):
        bound_malloc_retention()
    try:
        return asyncio.run(main_async(names, settings))
    except Exception as error:  # noqa: BLE001 - already logged with its traceback
        print(f"skybridge: failed to start: {error}", file=sys.stderr)
        return 1
