"""Random text through the ImportElementSets RPC: the answer is OK or INVALID_ARGUMENT,
never INTERNAL, and a good record stays stored whatever its neighbours are."""

from __future__ import annotations

import asyncio
import json

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skybridge.orbit.v1 import orbit_pb2

from tests.conftest import bearer
from tests.orbit.conftest import ISS_L1, ISS_L2
from tests.orbit.test_omm import RECORD

_TLE_CHARS = st.sampled_from("0123456789 .+-ABCXZ\n")


def _mutated_tle() -> st.SearchStrategy[str]:
    """A valid record with a few characters replaced, dropped or inserted."""
    base = f"ISS\n{ISS_L1}\n{ISS_L2}\n"

    @st.composite
    def mutate(draw):
        text = list(base)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(text) - 1))
            op = draw(st.sampled_from(("replace", "delete", "insert")))
            if op == "replace":
                text[i] = draw(_TLE_CHARS)
            elif op == "delete":
                del text[i]
            else:
                text.insert(i, draw(_TLE_CHARS))
        return "".join(text)

    return mutate()


def _omm_json() -> st.SearchStrategy[str]:
    values = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
    keys = st.sampled_from([*RECORD, "UNKNOWN", ""])
    return st.dictionaries(keys, values, max_size=6).map(
        lambda over: json.dumps([dict(RECORD, **over)], allow_nan=True))


TEXTS = st.one_of(st.text(max_size=300), _mutated_tle(), _omm_json(),
                  st.sampled_from(["<omm", "[", "{}", "NORAD_CAT_ID,EPOCH\n1,x", "1 \n2 "]))


async def test_random_text_through_the_rpc_is_never_internal(orbit, minter):
    kit, stub = orbit
    write = bearer(minter, "orbit.write")
    loop = asyncio.get_running_loop()
    await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(
        text=f"{ISS_L1}\n{ISS_L2}\n"), metadata=write)

    async def one(text: str) -> grpc.StatusCode:
        try:
            await stub.ImportElementSets(orbit_pb2.ImportElementSetsRequest(text=text),
                                         metadata=write)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    seen: set = set()

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(TEXTS)
    def check(text: str) -> None:
        code = asyncio.run_coroutine_threadsafe(one(text), loop).result(timeout=60)
        seen.add(code)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, text)

    # hypothesis drives from a worker thread; the calls run on this test's event loop
    await asyncio.to_thread(check)
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
    sat = await kit.servicer.catalog.get_satellite(25544)
    assert sat is not None and sat.element_set is not None
