"""The contract fuzz test: every RPC of the four services, with empty, random, hostile and
non-protobuf requests, on SQLite and PostgreSQL, keeps the error contract (see
`tests.fuzz.harness`): never INTERNAL or UNKNOWN, ErrorInfo on every error, BadRequest on
every INVALID_ARGUMENT, no write from a refused mutation, every server SERVING at the end.

A fixed seed and budget (`SKYBRIDGE_FUZZ_SEED`, `SKYBRIDGE_FUZZ_CALLS` to try others);
`make fuzz` runs the long budget. A failure lists each violation class and method with
its request and answer.
"""

from __future__ import annotations

import os

import pytest

from tests.fuzz.generate import MODES
from tests.fuzz.harness import Fuzzer
from tests.fuzz.pool import Pool
from tests.fuzz.suite import FuzzSuite

SEED = int(os.environ.get("SKYBRIDGE_FUZZ_SEED", "20261203"))
#: About 30 calls a method: 40 s per backend here, the suite's start included.
CALLS = int(os.environ.get("SKYBRIDGE_FUZZ_CALLS", "2400"))


async def test_every_rpc_keeps_the_error_contract_under_fuzzing(settings, minter, backend):
    suite = FuzzSuite(settings, minter)
    await suite.start()
    try:
        pool = Pool()
        warm_up_failures = await suite.warm_up(pool)
        fuzzer = Fuzzer(suite.targets, minter, seed=SEED, backend=backend,
                        quiet_steps=suite.quiet_steps, pool=pool)
        await fuzzer.open()
        try:
            report = await fuzzer.run(CALLS)
        finally:
            await fuzzer.close()
    finally:
        await suite.close()
    print(report.json_line())  # the totals; a failure below lists the violations

    # the fuzzer reached everything: every method of every service, in every mode
    registered = {m.path for t in suite.targets for m in t.methods}
    assert {t.name for t in suite.targets} == {"orbit", "provisioning", "linkbroker", "threat"}
    assert report.methods_called == registered
    assert all(f"{mode}:" in " ".join(report.by_method[path]) for path in registered
               for mode in MODES), "a method missed a mode"
    assert not warm_up_failures, warm_up_failures
    assert not report.fuzzer_errors, report.fuzzer_errors
    assert report.by_code["OK"] > CALLS // 10, "too few calls got through: " + str(
        dict(report.by_code))

    if report.violations:
        pytest.fail(f"{len(report.violations)} answers broke the contract (seed {SEED}, "
                    f"{backend}):\n" + report.render(examples=2), pytrace=False)
