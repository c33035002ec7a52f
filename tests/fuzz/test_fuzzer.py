"""The fuzzer itself: its generator covers what the contract fuzz test claims, is
deterministic, and its checks catch what they look for (on the probe service, whose
`Explode` fails on purpose, and on a probe that writes before refusing)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from skybridge.linkbroker.v1 import contacts_pb2, linkbroker_pb2
from skybridge.orbit.v1 import orbit_pb2
from skybridge.provisioning.v1 import provisioning_pb2, resources_pb2
from skybridge.testing.v1 import probe_pb2, probe_pb2_grpc
from skybridge.threat.v1 import threat_pb2

from shared.auth import requires
from shared.errors import InvalidArgument
from shared.service import ServiceKit
from tests.fuzz.generate import KINDS, MODES, Generator, methods_of
from tests.fuzz.harness import Fuzzer, StoreProbe, Target
from tests.fuzz.pool import Pool, collection_key
from tests.probe.server import SERVICE as PROBE
from tests.probe.server import ProbeServicer
from tests.probe.server import build as build_probe
from tests.probe.store import NoteRow

MODULES = (orbit_pb2, provisioning_pb2, linkbroker_pb2, contacts_pb2, threat_pb2, probe_pb2)
SERVICES = [s for m in MODULES for s in m.DESCRIPTOR.services_by_name.values()]
METHODS = methods_of(SERVICES)
NOW = 1_800_000_000.0


def _cases(seed: int, n: int, mode=None):
    generator = Generator(Pool(), clock=lambda: NOW)
    for i in range(n):
        method = METHODS[i % len(METHODS)]
        yield generator.case(method, random.Random(f"{seed}/{i}"), mode)


def test_every_method_kind_and_mode_is_generated():
    assert {m.kind for m in METHODS} == set(KINDS)
    seen = {(c.method.path, c.mode) for mode in MODES for c in _cases(1, len(METHODS), mode)}
    assert seen == {(m.path, mode) for m in METHODS for mode in MODES}


def test_the_same_seed_gives_the_same_requests():
    first = [c.bodies for c in _cases(7, 400)]
    again = [c.bodies for c in _cases(7, 400)]
    other = [c.bodies for c in _cases(8, 400)]
    assert first == again
    assert first != other


def test_empty_and_random_bodies_are_requests_of_the_method():
    for case in _cases(3, 3 * len(METHODS), "random"):
        message_type = GetMessageClass(case.method.input)
        for body, part in zip(case.bodies, case.parts, strict=True):
            if not part.startswith("raw("):  # a stream may carry one raw message
                message_type.FromString(body)  # raises if it does not parse
    for case in _cases(3, len(METHODS), "empty"):
        assert all(body == b"" for body in case.bodies[:1])


def test_raw_bodies_mostly_do_not_parse():
    failures = total = 0
    for case in _cases(5, 10 * len(METHODS), "raw"):
        message_type = GetMessageClass(case.method.input)
        for body in case.bodies:
            total += 1
            try:
                message_type.FromString(body)
            except DecodeError:
                failures += 1
    assert failures > total * 0.7, (failures, total)


def test_hostile_values_cover_the_contract_classes():
    notes = " ".join(n for c in _cases(11, 40 * len(METHODS), "hostile") for n in c.notes)
    for needle in ("nan", "inf", "-0.0", "(not a ", "Timestamp(seconds=-62135596801",
                   "nanos=1000000000", "Duration(seconds=315576000001", "100000 ",
                   "102400-char string", "\\x00", "\\u202e", "DROP TABLE", "{{7*7}}",
                   "customers/../plans/x", "every member set", "invalid UTF-8",
                   "2147483647", "4294967295", "-9223372036854775808", "present but empty"):
        assert needle in notes, needle


def test_every_member_of_a_oneof_travels_on_the_wire():
    generator = Generator(Pool(), clock=lambda: NOW)
    method = next(m for m in METHODS if m.name == "Propagate")
    for i in range(200):
        case = generator.case(method, random.Random(f"oneof/{i}"), "hostile")
        if any("times: every member set" in n for n in case.notes):
            break
    else:
        pytest.fail("no case set every member of PropagateRequest.times")
    body = case.body
    # both members' tags (grid = 2, time_list = 3, length-delimited) are in the body
    assert b"\x12" in body and b"\x1a" in body
    request = orbit_pb2.PropagateRequest.FromString(body)
    assert request.WhichOneof("times") in ("grid", "time_list")


def test_names_from_answers_are_reused_for_the_right_fields():
    pool = Pool()
    pool.harvest(provisioning_pb2.GetTerminalResponse(terminal=resources_pb2.Terminal(
        name="customers/c1/terminals/t1", subscription="customers/c1/subscriptions/s1")),
        tenant="contoso")
    assert collection_key("customers/c1/terminals/t1") == "customers.terminals"
    generator = Generator(pool, clock=lambda: NOW)
    get_terminal = next(m for m in METHODS if m.name == "GetTerminal")
    names = {generator.case(get_terminal, random.Random(i), "random", tenant="contoso")
             .parts[0] for i in range(40)}
    assert any("customers/c1/terminals/t1" in n for n in names)
    activate = next(m for m in METHODS if m.name == "ActivateSubscription")
    names = {generator.case(activate, random.Random(i), "random").parts[0] for i in range(40)}
    assert any("name: 'customers/c1/subscriptions/s1'" in n for n in names)


# --- the harness against the probe service --------------------------------------------------

@pytest.fixture(autouse=True)
def short_sleeps(monkeypatch):
    """The probe's Sleep refuses more than 0.1 s here (INVALID_ARGUMENT, as any duration past
    its cap), so that the harness runs with a deadline only a hang reaches and still ends
    quickly: what these tests look for (an INTERNAL, a write by a refused call) must never
    hang on a call that a loaded machine made slower than a short deadline."""
    monkeypatch.setattr("tests.probe.server.MAX_SLEEP_SECONDS", 0.1)


async def _fuzz(kit, minter, calls: int, **options):
    await kit.server.start()
    await kit.server.become_ready()
    target = Target("probe", kit)
    fuzzer = Fuzzer([target], minter, seed=5, deadline=60.0, **options)
    try:
        await fuzzer.open()
        return await fuzzer.run(calls)
    finally:
        await fuzzer.close()
        await kit.server.drain(0)


async def test_the_harness_reports_internal_with_the_servers_exception(settings, minter):
    report = await _fuzz(await build_probe(settings), minter, 120)
    assert report.by_kind.keys() == set(KINDS)
    classes = {(v.klass, v.method) for v in report.violations}
    assert ("INTERNAL", "/skybridge.testing.v1.ProbeService/Explode") in classes
    explode = next(v for v in report.violations if v.method.endswith("/Explode"))
    assert "RuntimeError: database password is hunter2" in explode.server_error
    assert "tests/probe/server.py" in explode.server_error
    # Explode is the probe's only broken method
    assert {m for _, m in classes} == {"/skybridge.testing.v1.ProbeService/Explode"}, classes
    assert report.serving_at_end == {"probe": True}
    assert report.store_checks > 0
    assert '"internal": ' in report.json_line()


class _WritesThenRefuses(ProbeServicer):
    @requires("probe.write")
    async def CreateNote(self, request, context):
        async with self.sessions.begin() as session:
            session.add(NoteRow(text="written by a refused call", priority=0))
        raise InvalidArgument("refused after writing", violations=[("note", "refused")])


async def test_the_harness_catches_a_refused_call_that_wrote(settings, minter):
    kit = ServiceKit.create("probe", settings, port=0)
    kit.use_store(Path(__file__).parent.parent / "probe" / "migrations")
    kit.server.add(_WritesThenRefuses(kit.sessions), probe_pb2_grpc.add_ProbeServiceServicer_to_server,
                   PROBE)
    report = await _fuzz(kit, minter, 60)
    leaks = [v for v in report.violations if v.klass == "store changed on refusal"]
    assert leaks, report.render()
    assert {v.method for v in leaks} == {"/skybridge.testing.v1.ProbeService/CreateNote"}
    assert "probe.notes rows" in leaks[0].extra


async def test_the_store_probe_sees_a_commit_and_only_a_commit(settings):
    kit = await build_probe(settings)
    await kit.server.start()
    await kit.server.become_ready()
    probe = StoreProbe("probe", kit.location)
    try:
        token, tables = probe.state()
        assert "notes" in tables and "alembic_version" not in tables
        async with kit.sessions() as session, session.begin():
            session.add(NoteRow(text="rolled back", priority=1))
            await session.flush()
            await session.rollback()
        assert probe.state()[1] == tables
        async with kit.sessions.begin() as session:
            session.add(NoteRow(text="kept", priority=1))
        assert probe.token() != token
        assert probe.state()[1]["notes"][0] == tables["notes"][0] + 1
    finally:
        probe.close()
        await kit.server.drain(0)
