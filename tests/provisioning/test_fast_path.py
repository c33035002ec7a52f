"""The one-statement mutations (PostgreSQL, `Store.mutate(fast=...)`) give the same answers,
audit records and events as the transactional path, replay a retry, reject a reused key, and
decline (to the transactional path) whenever the rows changed under them."""

from __future__ import annotations

import asyncio
import json
import re

import grpc
import pytest
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res
from sqlalchemy import select

from services.provisioning.store.tables import AuditRow, EventRow
from tests.provisioning.conftest import failure, new_customer, rid

_ID = re.compile(r"[0-9a-f]{14}[0-9a-f]{6}")


def _normal(data):
    """Ids replaced by their order of appearance, so two runs compare equal."""
    names: dict[str, str] = {}
    return _ID.sub(lambda m: names.setdefault(m.group(0), f"<id{len(names)}>"), data)


async def _scenario(stub, who, customer: str, serial: str) -> list[str]:
    """Create and activate a subscription, register a terminal, move it through its states;
    the answers (as text, ids normalized per scenario)."""
    meta = who.customer()
    answers = []
    sub = (await stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer, subscription=res.Subscription(plan="plans/enterprise-100", quantity=3,
                                                       display_name="fleet"),
        request_id=rid()), metadata=meta)).subscription
    answers.append(sub)
    answers.append((await stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
        name=sub.name, plan="plans/enterprise-100", quantity=3, request_id=rid()),
        metadata=meta)).subscription)
    terminal = (await stub.CreateTerminal(pb.CreateTerminalRequest(
        parent=customer, terminal=res.Terminal(
            serial_number=serial, subscription=sub.name,
            location=common_pb2.GeodeticPoint(latitude_deg=47.5, longitude_deg=-122.25,
                                              altitude_m=12.0)),
        request_id=rid()), metadata=meta)).terminal
    answers.append(terminal)
    for verb in ("Provision", "Activate", "Suspend", "Activate"):
        terminal = (await getattr(stub, f"{verb}Terminal")(
            getattr(pb, f"{verb}TerminalRequest")(name=terminal.name, etag=terminal.etag,
                                                  request_id=rid()), metadata=meta)).terminal
        answers.append(terminal)
    return [str(a) for a in answers]


async def _records(kit, since_audit: int, since_event: int):
    async with kit.store.sessions() as session:
        audits = (await session.execute(select(AuditRow).where(AuditRow.id > since_audit)
                                        .order_by(AuditRow.id))).scalars().all()
        events = (await session.execute(select(EventRow).where(EventRow.seq > since_event)
                                        .order_by(EventRow.seq))).scalars().all()
    return ([(a.resource, a.action, a.actor, a.actor_tenant, a.before, a.after, a.create_time)
             for a in audits],
            [(e.type, e.resource, e.customer_id, e.tenant, e.partner_id, e.payload,
              e.create_time) for e in events],
            max([since_audit, *(a.id for a in audits)]),
            max([since_event, *(e.seq for e in events)]))


async def test_fast_path_matches_the_transactional_path(prov, who, backend):
    if backend == "sqlite":
        pytest.skip("the one-statement path is PostgreSQL's")
    kit, stub = prov
    store = kit.store
    fast_writes = store.fast_writes
    taken = []
    original = store.fast_write

    async def counting(call, sql, params, answer):
        result = await original(call, sql, params, answer)
        taken.append(result is not None)
        return result

    store.fast_write = counting
    customer = await new_customer(stub, who)
    _, _, audit_mark, event_mark = await _records(kit, 0, 0)

    fast = await _scenario(stub, who, customer.name, "UT-FAST-1")
    fast_audits, fast_events, audit_mark, event_mark = await _records(kit, audit_mark,
                                                                      event_mark)
    assert taken == [True] * 7  # every call of the scenario took the one-statement path

    store.fast_writes = None  # the transactional path
    try:
        slow = await _scenario(stub, who, customer.name, "UT-FAST-1X")
        slow_audits, slow_events, *_ = await _records(kit, audit_mark, event_mark)
    finally:
        store.fast_writes = fast_writes
    assert len(taken) == 7

    def same(fast_items, slow_items):
        assert len(fast_items) == len(slow_items)
        for f, s in zip(fast_items, slow_items, strict=True):
            f, s = _normal(repr(f)), _normal(repr(s).replace("UT-FAST-1X", "UT-FAST-1"))
            assert f == s

    same(fast, slow)
    same(fast_audits, slow_audits)
    same(fast_events, slow_events)
    for audit in fast_audits:  # stored JSON is canonical
        for text in audit[4:6]:
            if text:
                assert text == json.dumps(json.loads(text), sort_keys=True,
                                          separators=(",", ":"))


async def test_fast_path_replays_rejects_reuse_and_declines_on_change(prov, who, backend):
    if backend == "sqlite":
        pytest.skip("the one-statement path is PostgreSQL's")
    kit, stub = prov
    meta = who.customer()
    customer = await new_customer(stub, who)
    sub = (await stub.CreateSubscription(pb.CreateSubscriptionRequest(
        parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                            quantity=2),
        request_id=rid()), metadata=meta)).subscription
    await stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
        name=sub.name, plan="plans/enterprise-100", quantity=2, request_id=rid()),
        metadata=meta)

    async def register(serial: str, key: str):
        return await stub.CreateTerminal(pb.CreateTerminalRequest(
            parent=customer.name, terminal=res.Terminal(
                serial_number=serial, subscription=sub.name,
                location=common_pb2.GeodeticPoint(latitude_deg=1, longitude_deg=2)),
            request_id=key), metadata=meta)

    key = rid()
    first = await register("UT-FP-1", key)
    assert await register("UT-FP-1", key) == first  # a retry: the first answer
    reused = await failure(register("UT-FP-2", key))
    assert reused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "REQUEST_ID_REUSED" in str(reused.trailing_metadata())

    # 16 concurrent transitions of one terminal, each its own key: one provisions it, the
    # rest see it PROVISIONED (declined to the transactional path, which reports it).
    name = first.terminal.name
    results = await asyncio.gather(*(stub.ProvisionTerminal(pb.ProvisionTerminalRequest(
        name=name, request_id=rid()), metadata=meta) for _ in range(16)),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION
               for r in results if isinstance(r, Exception))
    # 16 concurrent calls with one key: one effect, one answer.
    key = rid()
    answers = await asyncio.gather(*(stub.ActivateTerminal(pb.ActivateTerminalRequest(
        name=name, request_id=key), metadata=meta) for _ in range(16)))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    # A stale etag is still ABORTED.
    stale = await failure(stub.SuspendTerminal(pb.SuspendTerminalRequest(
        name=name, etag=first.terminal.etag, request_id=rid()), metadata=meta))
    assert stale.code() == grpc.StatusCode.ABORTED
    # Quantity 2: concurrent registrations make exactly one more terminal.
    outcomes = await asyncio.gather(*(register(f"UT-FP-Q{i}", rid()) for i in range(8)),
                                    return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in outcomes) == 1
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
               for r in outcomes if isinstance(r, Exception))
    audits = (await stub.ListAuditRecords(pb.ListAuditRecordsRequest(parent=name),
                                          metadata=who.operator())).audit_records
    assert [a.action for a in audits] == ["terminal.create", "terminal.provision",
                                          "terminal.activate"]

    # A fast suspension: this replica remembers the terminal SUSPENDED at version 4. Another
    # writer (here: the transactional path) moves it on. The next fast activation is planned
    # from the stale row, its statement rolls back, and the transactional path activates the
    # current row.
    await stub.SuspendTerminal(pb.SuspendTerminalRequest(name=name, request_id=rid()),
                               metadata=meta)
    fast_writes, kit.store.fast_writes = kit.store.fast_writes, None
    try:
        for verb in ("Activate", "Suspend"):
            await getattr(stub, f"{verb}Terminal")(getattr(pb, f"{verb}TerminalRequest")(
                name=name, request_id=rid()), metadata=meta)
    finally:
        kit.store.fast_writes = fast_writes
    declined = []
    original = kit.store.fast_write

    async def watching(call, sql, params, answer):
        result = await original(call, sql, params, answer)
        declined.append(result is None)
        return result

    kit.store.fast_write = watching
    active = (await stub.ActivateTerminal(pb.ActivateTerminalRequest(
        name=name, request_id=rid()), metadata=meta)).terminal
    assert declined == [True]  # the stale plan's statement rolled back
    assert active.state == res.Terminal.STATE_ACTIVE and active.etag == 'W/"7"'
    audits = (await stub.ListAuditRecords(pb.ListAuditRecordsRequest(parent=name),
                                          metadata=who.operator())).audit_records
    assert [a.action for a in audits][3:] == ["terminal.suspend", "terminal.activate",
                                              "terminal.suspend", "terminal.activate"]
    last = audits[-1]
    assert last.before["version"] == 6 and last.after["version"] == 7
    # Planned from the row it reads now, the next one takes the fast path again.
    await stub.SuspendTerminal(pb.SuspendTerminalRequest(name=name, request_id=rid()),
                               metadata=meta)
    assert declined == [True, False]
