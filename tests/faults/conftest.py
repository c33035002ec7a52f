"""Fixtures of the fault tests: service processes that are always killed at the end."""

from __future__ import annotations

import pytest

from tests.faults.harness import Services


@pytest.fixture
async def services(settings, tmp_path):
    started = Services(settings, tmp_path)
    try:
        yield started
    finally:
        await started.close()
