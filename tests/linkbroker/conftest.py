"""The link broker's usual test suite: orbit, provisioning and one broker, on loopback
(a test module that needs another shape defines its own `suite`)."""

from __future__ import annotations

import pytest

from tests.linkbroker.suite import start_suite


@pytest.fixture
async def suite(settings, minter):
    suite = await start_suite(settings, minter)
    await suite.add_broker()
    yield suite
    await suite.close()
