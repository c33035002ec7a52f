from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STARLINK_TLE = DATA_DIR / "starlink-2026-05-12.tle"
STARLINK_OMM = DATA_DIR / "starlink-2024-05-20.omm.json"

# Vallado's 28872: decays (SGP4 error 6) about 55 minutes after its epoch
DECAY = (
    "1 28872U 05037B   05333.02012661  .25992681  00000-0  24476-3 0  1534\n"
    "2 28872  96.4736 157.9986 0303955 244.0492 110.6523 16.46015938 10708\n"
)

ISS_L1 = "1 25544U 98067A   19343.69339541  .00001764  00000-0  38792-4 0  9991"
ISS_L2 = "2 25544  51.6439 211.2001 0007417  17.6667  85.6398 15.50103472202482"


@pytest.fixture(scope="session")
def starlink_text() -> str:
    if not STARLINK_TLE.exists():
        pytest.skip(f"{STARLINK_TLE} not present")
    return STARLINK_TLE.read_text()


# --- a real orbit server on loopback (both backends through `settings`) ------------------

import dataclasses  # noqa: E402

import grpc  # noqa: E402


async def start_orbit(settings, *, seed: bool = False, warm: bool = False):
    from services.orbit.server import build

    kit = await build(dataclasses.replace(settings, seed=seed), port=0, warm=warm)
    await kit.server.start()
    await kit.server.become_ready()
    return kit


@pytest.fixture
async def orbit(settings):
    """(kit, stub) of an orbit server with an empty catalog."""
    from skybridge.orbit.v1 import orbit_pb2_grpc

    kit = await start_orbit(settings)
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{kit.server.port}",
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    yield kit, orbit_pb2_grpc.OrbitServiceStub(channel)
    await channel.close()
    await kit.server.drain(0)


async def failure(call) -> grpc.aio.AioRpcError:
    """The error a call fails with (fails the test when it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def violations(error) -> dict[str, str]:
    from shared.status import details_of

    return {v.field: v.description for v in details_of(error).violations}


def tle_text(sets, names: bool = True) -> str:
    """TLE text (with checksums) for element sets."""
    from services.orbit.tle import format_tle

    return "".join(format_tle(es, include_name=names).rstrip("\n") + "\n" for es in sets)
