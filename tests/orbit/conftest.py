from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STARLINK_TLE = DATA_DIR / "starlink-2026-05-12.tle"
STARLINK_OMM = DATA_DIR / "starlink-2024-05-20.omm.json"

ISS_L1 = "1 25544U 98067A   19343.69339541  .00001764  00000-0  38792-4 0  9991"
ISS_L2 = "2 25544  51.6439 211.2001 0007417  17.6667  85.6398 15.50103472202482"


@pytest.fixture(scope="session")
def starlink_text() -> str:
    if not STARLINK_TLE.exists():
        pytest.skip(f"{STARLINK_TLE} not present")
    return STARLINK_TLE.read_text()
