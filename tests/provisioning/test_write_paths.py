"""Hypothesis state machine over both write paths on PostgreSQL, with request ids.

On PostgreSQL a mutation with a `request_id` first tries its one-statement form (the fast
path: SQL rendered from the domain predicates); without it, or when the statement declines,
the transactional path runs the same use case in Python. The two must never diverge.

One server, two worlds that receive the same random sequence of calls: world F with the
one-statement path on, world S with it off (`store.fast_writes = None`). Each world has its
own customer and keys. After every step the answers (message or gRPC code, details and
reason), the audit records and the events of the two worlds must be equal once ids, keys
and serial numbers are replaced by their order of appearance. The clock is the test's, so
times agree to the microsecond. Retries of the last call (same key) replay the first answer
and a key reused for another request is refused, in both worlds.

Each example starts with one call of every one-statement kind, so the test fails if world F
stops taking the fast path (counted by wrapping `Store.fast_write`) or world S ever takes it.
"""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res
from sqlalchemy import select

from services.provisioning.app import housekeeping, operations
from services.provisioning.domain import IDEMPOTENCY_RETENTION
from services.provisioning.store.tables import AuditRow, EventRow
from tests.provisioning.conftest import new_customer

STEPS = 40
EXAMPLES = 25
PLAN = "plans/enterprise-100"
FAST, SLOW = "WFAST", "WSLOW"  # world tags: upper case, so never inside a hex id
_ID = re.compile(r"[0-9a-f]{20}")


class World:
    """One customer's view of the run: its names, keys and what it has seen."""

    def __init__(self, tag: str, example: int, customer: str, customer_id: str) -> None:
        self.tag = tag
        self.example = example  # keys are per tenant: each example its own
        self.customer = customer
        self.customer_id = customer_id
        self.names: dict[str, str] = {}
        self.keys = 0
        self.subs: list[str] = []
        self.terminals: list[str] = []
        self.etags: dict[str, list[str]] = {}  # terminal -> etags it has had, oldest first
        self.last: tuple | None = None  # (method, request, outcome, answer) of the last call
        self.sent: dict[str, object] = {}  # request_id -> when it was first sent
        self.audit_mark = 0
        self.event_mark = 0

    def key(self) -> str:
        self.keys += 1
        return f"wp-{self.tag}-{self.example}-{self.keys}"

    def normal(self, text: str) -> str:
        text = text.replace(self.tag, "<world>")
        return _ID.sub(lambda m: self.names.setdefault(m.group(0), f"<id{len(self.names)}>"),
                       text)


async def _records(store, world: World) -> list[str]:
    """The world's audit records and events written since the last look, as text."""
    async with store.sessions() as session:
        audits = (await session.execute(select(AuditRow).where(
            AuditRow.id > world.audit_mark,
            AuditRow.resource.like(f"customers/{world.customer_id}%"))
            .order_by(AuditRow.id))).scalars().all()
        events = (await session.execute(select(EventRow).where(
            EventRow.seq > world.event_mark, EventRow.customer_id == world.customer_id)
            .order_by(EventRow.seq))).scalars().all()
    world.audit_mark = max([world.audit_mark, *(a.id for a in audits)])
    world.event_mark = max([world.event_mark, *(e.seq for e in events)])
    return ([repr((a.resource, a.action, a.actor, a.actor_tenant, a.before, a.after,
                   a.create_time)) for a in audits]
            + [repr((e.resource, e.type, e.tenant, e.partner_id, e.payload, e.create_time))
               for e in events])


def make_machine(kit, stub, meta, clock, worlds: tuple[World, World], taken: dict, loop):
    store = kit.store
    fast_writes = store.fast_writes
    fast, slow = worlds

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    async def outcome(method: str, request):
        """(("ok", answer text) or ("error", code, details, trailers), answer or None)."""
        try:
            answer = await getattr(stub, method)(request, metadata=meta)
        except grpc.aio.AioRpcError as error:
            return ("error", error.code().name, error.details(),
                    str(error.trailing_metadata())), None
        return ("ok", str(answer)), answer

    def call(build, method: str) -> tuple[tuple, tuple]:
        """`build(world)` -> request, sent to both worlds; their outcomes, normalized."""
        seen = []
        for world in worlds:
            store.fast_writes = fast_writes if world is fast else None
            taken["world"] = world.tag
            request = build(world)
            result, answer = run(outcome(method, request))
            world.last = (method, request, result, answer)
            world.sent.setdefault(request.request_id, clock())
            seen.append(tuple(world.normal(str(part)) for part in result))
        store.fast_writes = fast_writes
        assert seen[0] == seen[1], f"{method}: the two paths answered differently"
        return tuple(seen)

    def answer_of(world: World, field: str):
        """A field of the last call's answer (None for a refusal)."""
        answer = world.last[3]
        return None if answer is None else getattr(answer, field)

    class Machine(RuleBasedStateMachine):
        @initialize()
        def one_of_each_fast_kind(self):
            for step, args in ((self.buy, dict(quantity=2)),
                               (self.activate, dict(i=0, mismatch=False)),
                               (self.register, dict(i=0)),
                               (self.move_terminal, dict(i=0, verb="Provision",
                                                         etag="current"))):
                step(**args)
                assert fast.last[2][0] == "ok", fast.last[2]

        @rule(quantity=st.integers(1, 3))
        def buy(self, quantity):
            call(lambda w: pb.CreateSubscriptionRequest(
                parent=w.customer, subscription=res.Subscription(
                    plan=PLAN, quantity=quantity, display_name="fleet"),
                request_id=w.key()), "CreateSubscription")
            for world in worlds:
                sub = answer_of(world, "subscription")
                assert sub is not None, world.last[2]
                world.subs.append(sub.name)

        @precondition(lambda self: fast.subs)
        @rule(i=st.integers(0, 20), mismatch=st.booleans())
        def activate(self, i, mismatch):
            # A mismatched activation (quantity 9) is ACTIVATION_MISMATCH on both paths.
            call(lambda w: pb.ActivateSubscriptionRequest(
                name=w.subs[i % len(w.subs)], plan=PLAN,
                quantity=9 if mismatch else self._quantity(w, i), request_id=w.key()),
                "ActivateSubscription")

        def _quantity(self, world: World, i: int) -> int:
            async def read():
                got = await stub.GetSubscription(pb.GetSubscriptionRequest(
                    name=world.subs[i % len(world.subs)]), metadata=meta)
                return got.subscription.quantity
            return run(read())

        @precondition(lambda self: fast.subs)
        @rule(i=st.integers(0, 20), action=st.sampled_from(["Suspend", "Reinstate"]))
        def subscription_state(self, i, action):
            if action == "Suspend":
                call(lambda w: pb.SuspendSubscriptionRequest(
                    name=w.subs[i % len(w.subs)], reason="model", request_id=w.key()),
                    "SuspendSubscription")
            else:
                call(lambda w: pb.ReinstateSubscriptionRequest(
                    name=w.subs[i % len(w.subs)], request_id=w.key()),
                    "ReinstateSubscription")

        @precondition(lambda self: fast.subs)
        @rule(i=st.integers(0, 20), quantity=st.integers(1, 4), cancel=st.booleans())
        def operation(self, i, quantity, cancel):
            if cancel:
                call(lambda w: pb.CancelSubscriptionRequest(
                    name=w.subs[i % len(w.subs)], reason="model", request_id=w.key()),
                    "CancelSubscription")
            else:
                call(lambda w: pb.ChangeSubscriptionQuantityRequest(
                    name=w.subs[i % len(w.subs)], quantity=quantity, request_id=w.key()),
                    "ChangeSubscriptionQuantity")
            run(operations.run_pending(kit.uow))

        @precondition(lambda self: fast.subs)
        @rule(i=st.integers(0, 20))
        def register(self, i):
            serial = f"UT-{fast.example}-{fast.keys + 1}"
            call(lambda w: pb.CreateTerminalRequest(
                parent=w.customer, terminal=res.Terminal(
                    serial_number=f"{serial}-{w.tag}", subscription=w.subs[i % len(w.subs)],
                    location=common_pb2.GeodeticPoint(latitude_deg=47.5,
                                                      longitude_deg=-122.25)),
                request_id=w.key()), "CreateTerminal")
            for world in worlds:
                terminal = answer_of(world, "terminal")
                if terminal is not None:
                    world.terminals.append(terminal.name)
                    world.etags[terminal.name] = [terminal.etag]

        @precondition(lambda self: fast.terminals)
        @rule(i=st.integers(0, 50),
              verb=st.sampled_from(["Provision", "Activate", "Suspend", "Decommission"]),
              etag=st.sampled_from(["", "current", "first"]))
        def move_terminal(self, i, verb, etag):
            def build(w: World):
                name = w.terminals[i % len(w.terminals)]
                tag = {"": "", "current": w.etags[name][-1], "first": w.etags[name][0]}[etag]
                return getattr(pb, f"{verb}TerminalRequest")(name=name, etag=tag,
                                                             request_id=w.key())
            call(build, f"{verb}Terminal")
            for world in worlds:
                terminal = answer_of(world, "terminal")
                if terminal is not None:
                    world.etags[terminal.name].append(terminal.etag)

        @precondition(lambda self: fast.last is not None)
        @rule()
        def retry(self):
            first = [w.last for w in worlds]
            held = clock() - fast.sent[fast.last[1].request_id] < IDEMPOTENCY_RETENTION
            call(lambda w: w.last[1], first[0][0])
            for world, (_, _, result, _) in zip(worlds, first, strict=True):
                if result[0] == "ok" and held:  # a retry with a held key: the first answer
                    assert world.last[2] == result

        @precondition(lambda self: fast.last is not None and fast.last[2][0] == "ok")
        @rule()
        def reuse_key(self):
            first_sent = fast.sent[fast.last[1].request_id]
            seen = call(lambda w: pb.CreateSubscriptionRequest(
                parent=w.customer, subscription=res.Subscription(
                    plan=PLAN, quantity=1, display_name="reused"),
                request_id=w.last[1].request_id), "CreateSubscription")
            # Within the retention the key is held (refused); after it, swept: a new call.
            if clock() - first_sent < IDEMPOTENCY_RETENTION:
                assert seen[0][:2] == ("error", "INVALID_ARGUMENT")
                assert "REQUEST_ID_REUSED" in seen[0][3]

        @rule(days=st.sampled_from([1, 10, 31]))
        def time_passes(self, days):
            clock.advance(days=days)
            run(housekeeping.sweep(kit.uow))

        @invariant()
        def same_records(self):
            if fast.last is None:
                return
            # Within one step, records of different resources come in id order, and ids made
            # at one (frozen) instant order at random: compare per resource, in order.
            def by_resource(world):
                records = [world.normal(r) for r in run(_records(store, world))]
                return sorted(records, key=lambda r: r.split("', ", 1)[0])
            assert by_resource(fast) == by_resource(slow)

    return Machine


async def test_both_write_paths_give_the_same_answers_audit_and_events(prov, who, clock,
                                                                       backend):
    if backend == "sqlite":
        pytest.skip("the one-statement path is PostgreSQL's")
    kit, stub = prov
    store = kit.store
    assert store.fast_writes is not None
    taken: dict = {"world": None, FAST: 0, SLOW: 0, "declined": 0}
    original = store.fast_write

    async def counting(call, sql, params, answer):
        result = await original(call, sql, params, answer)
        taken[taken["world"]] += 1
        taken["declined"] += result is None
        return result

    store.fast_write = counting
    loop = asyncio.get_running_loop()
    examples = 0

    def machine():
        # Each example: two fresh customers, so earlier examples' rows do not interfere.
        fast_customer = asyncio.run_coroutine_threadsafe(new_customer(stub, who), loop).result()
        slow_customer = asyncio.run_coroutine_threadsafe(new_customer(stub, who), loop).result()
        nonlocal examples
        examples += 1
        worlds = (World(FAST, examples, fast_customer.name, fast_customer.name.split("/")[1]),
                  World(SLOW, examples, slow_customer.name, slow_customer.name.split("/")[1]))
        return make_machine(kit, stub, who.customer(), clock, worlds, taken, loop)()

    config = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                      suppress_health_check=list(HealthCheck))
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=config)
    assert taken[SLOW] == 0  # the transactional world never took the one-statement path
    # Every example's opening calls (four one-statement kinds) were answered by it.
    assert taken[FAST] - taken["declined"] >= 4 * examples
