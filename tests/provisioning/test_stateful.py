"""Hypothesis stateful test of subscriptions and terminals at the store level (both backends).

Random sequences of activations, suspensions, reinstatements, cancellations, quantity
changes, terminal registrations and transitions, clock jumps and sweeps run against the real
store; a model predicts which calls must succeed, and after every step the database is
checked: every audited state change is an allowed edge, each audit chain is continuous, and a
subscription's terminal count equals its live terminals and never exceeds its quantity.

Hypothesis drives the machine from a worker thread; each store call is run on the test's
event loop (`run_coroutine_threadsafe`), so no second event loop is ever created.
"""

from __future__ import annotations

import asyncio
import json

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
from sqlalchemy import select

from services.provisioning import domain
from services.provisioning.app import cosell, housekeeping, operations, subscriptions, terminals
from services.provisioning.app.unit_of_work import SYSTEM, Request, UnitOfWork
from services.provisioning.store.tables import AuditRow, SubscriptionRow, TerminalRow
from shared.errors import DomainError, FailedPrecondition, InvalidArgument, ResourceExhausted

STEPS = 25
EXAMPLES = 15


def make_machine(store, clock, loop):
    uow = UnitOfWork(store)

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    def mutate(work):
        box = {}

        async def go(tx):
            box["result"] = await work(tx)
            return box["result"]

        try:
            run(uow.run(Request(SYSTEM, "stateful", "", b"", lambda _: b""), go))
        except DomainError as error:
            return None, error
        return box["result"], None

    class Machine(RuleBasedStateMachine):
        @initialize()
        def customer(self):
            created, error = mutate(lambda tx: cosell.create_customer(tx, {
                "display_name": "Model Org", "sector": "PRIVATE", "country": "US",
                "contact_email": "m@example.com", "azure_tenant_id": "",
                "azure_subscription_id": "", "tenant": "model"}, None))
            assert error is None
            self.customer_id = created.id
            self.subs: list[dict] = []  # model: id, state, quantity, deadline, grace_end
            self.terminals: list[dict] = []  # model: id, sub index, state
            self.serial = 0

        @rule(quantity=st.integers(1, 3))
        def buy(self, quantity):
            created, error = mutate(lambda tx: subscriptions.create(
                tx, self.customer_id, "enterprise-100", quantity, ""))
            assert error is None
            self.subs.append({"id": created.id, "state": domain.PENDING, "quantity": quantity,
                              "deadline": clock() + domain.ACTIVATION_WINDOW, "grace": None})

        def _expect(self, ok: bool, error, *also):
            if ok:
                assert error is None, error
            else:
                # Refused by the rules (never by a database constraint as a backstop).
                assert isinstance(error, (FailedPrecondition, ResourceExhausted, *also)), error

        @precondition(lambda self: self.subs)
        @rule(i=st.integers(0, 20), action=st.sampled_from(
            ["activate", "suspend", "reinstate"]))
        def lifecycle(self, i, action):
            sub = self.subs[i % len(self.subs)]
            now = clock()
            ok = sub["state"] in domain.SUBSCRIPTION_ACTIONS[action][0]
            if action == "activate":
                ok = ok and now <= sub["deadline"]
                work = lambda tx: subscriptions.activate(  # noqa: E731
                    tx, self.customer_id, sub["id"], "enterprise-100", sub["quantity"])
            elif action == "suspend":
                work = lambda tx: subscriptions.suspend(  # noqa: E731
                    tx, self.customer_id, sub["id"], "model")
            else:
                ok = ok and now <= sub["grace"]
                work = lambda tx: subscriptions.reinstate(  # noqa: E731
                    tx, self.customer_id, sub["id"])
            _, error = mutate(work)
            self._expect(ok, error)
            if ok:
                sub["state"] = domain.SUBSCRIPTION_ACTIONS[action][1]
                sub["grace"] = now + domain.GRACE_PERIOD if action == "suspend" else None

        def _live(self, index):
            return [t for t in self.terminals
                    if t["sub"] == index and t["state"] != domain.DECOMMISSIONED]

        @precondition(lambda self: self.subs)
        @rule(i=st.integers(0, 20), quantity=st.integers(1, 4), cancel=st.booleans())
        def operation(self, i, quantity, cancel):
            index = i % len(self.subs)
            sub = self.subs[index]
            live = len(self._live(index))
            if cancel:
                ok = sub["state"] != domain.UNSUBSCRIBED
                work = lambda tx: subscriptions.start_operation(  # noqa: E731
                    tx, self.customer_id, sub["id"], "CANCEL")
            else:
                ok = (sub["state"] == domain.SUBSCRIBED and quantity != sub["quantity"]
                      and quantity >= live)
                work = lambda tx: subscriptions.start_operation(  # noqa: E731
                    tx, self.customer_id, sub["id"], "CHANGE_QUANTITY", quantity=quantity)
            _, error = mutate(work)
            self._expect(ok, error, InvalidArgument)
            run(operations.run_pending(uow))
            if ok and cancel:
                sub["state"] = domain.UNSUBSCRIBED
                for t in self._live(index):
                    t["state"] = domain.DECOMMISSIONED
            elif ok:
                sub["quantity"] = quantity

        @precondition(lambda self: self.subs)
        @rule(i=st.integers(0, 20))
        def register(self, i):
            index = i % len(self.subs)
            sub = self.subs[index]
            self.serial += 1
            serial = f"UT-{self.customer_id[-8:].upper()}-{self.serial}"
            ok = sub["state"] != domain.UNSUBSCRIBED and len(self._live(index)) < sub["quantity"]
            created, error = mutate(lambda tx: terminals.create(
                tx, self.customer_id, sub["id"], serial, (0.0, 0.0, 0.0)))
            self._expect(ok, error)
            if ok:
                self.terminals.append({"id": created.id, "sub": index,
                                       "state": domain.REGISTERED})

        @precondition(lambda self: self.terminals)
        @rule(i=st.integers(0, 50), action=st.sampled_from(sorted(domain.TERMINAL_ACTIONS)))
        def terminal(self, i, action):
            t = self.terminals[i % len(self.terminals)]
            ok = t["state"] in domain.TERMINAL_ACTIONS[action][0]
            if action == "activate":
                ok = ok and self.subs[t["sub"]]["state"] == domain.SUBSCRIBED
            _, error = mutate(lambda tx: terminals.transition(
                tx, self.customer_id, t["id"], action, ""))
            self._expect(ok, error)
            if ok:
                t["state"] = domain.TERMINAL_ACTIONS[action][1]

        @rule(days=st.sampled_from([1, 10, 31]))
        def time_passes(self, days):
            clock.advance(days=days)
            run(housekeeping.sweep(uow))
            for index, sub in enumerate(self.subs):
                if sub["state"] == domain.PENDING and clock() > sub["deadline"]:
                    sub["state"] = domain.UNSUBSCRIBED
                    for t in self._live(index):
                        t["state"] = domain.DECOMMISSIONED

        @invariant()
        def database_agrees(self):
            if not hasattr(self, "customer_id"):
                return
            run(self._check())

        async def _check(self):
            async with store.sessions() as session:
                subs = {s.id: s for s in (await session.execute(select(SubscriptionRow).where(
                    SubscriptionRow.customer_id == self.customer_id))).scalars()}
                terminals = list((await session.execute(select(TerminalRow).where(
                    TerminalRow.customer_id == self.customer_id))).scalars())
                audits = list((await session.execute(select(AuditRow).where(
                    AuditRow.resource.like(f"customers/{self.customer_id}/%"))
                    .order_by(AuditRow.id))).scalars())
            for model in self.subs:
                row = subs[model["id"]]
                assert row.state == model["state"]
                live = [t for t in terminals if t.subscription_id == row.id
                        and t.state != domain.DECOMMISSIONED]
                assert row.terminal_count == len(live) <= row.quantity
                if row.state == domain.UNSUBSCRIBED:
                    assert not live
            for model in self.terminals:
                assert next(t for t in terminals if t.id == model["id"]).state == model["state"]
            last: dict[str, str] = {}
            for record in audits:
                if "/operations/" in record.resource:
                    continue
                after = json.loads(record.after)["state"]
                if record.before:
                    before = json.loads(record.before)["state"]
                    edges = (domain.TERMINAL_EDGES if "/terminals/" in record.resource
                             else domain.SUBSCRIPTION_EDGES)
                    assert before == after or (before, after) in edges, (before, after)
                    assert last[record.resource] == before  # a continuous chain
                last[record.resource] = after

    return Machine


async def test_random_operation_sequences_keep_every_invariant(prov, clock):
    kit, _ = prov
    machine = make_machine(kit.store, clock, asyncio.get_running_loop())
    config = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                      suppress_health_check=list(HealthCheck))
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=config)
