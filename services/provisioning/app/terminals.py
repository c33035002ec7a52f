"""Use cases of terminals: register one on a subscription, and move it (provision,
activate, suspend, decommission). The rules are `domain.terminals` and the subscription's
(`domain.subscriptions.check_admits_terminal`, `check_serves_terminals`), the same
predicates the PostgreSQL fast path renders into its SQL."""

from __future__ import annotations

from shared.errors import AlreadyExists, NotFound

from ..domain import subscriptions as sub_rules
from ..domain import terminals as rules
from ..domain.access import admits, write_audience
from ..domain.events import EventType
from ..domain.names import check_etag, subscription_name, terminal_name
from ..domain.records import Terminal
from ..store import fast_terminals, rows
from ..store import terminals as store
from ..store.queries import customer_row
from .unit_of_work import Owner, Tx

#: The one-statement forms (`store/fast.py`): (store, call, *the use case's arguments).
create_fast = fast_terminals.create
transition_fast = fast_terminals.transition


def terminal_changed(tx: Tx, customer: Owner, after: Terminal, action: str,
                     before: Terminal | None) -> Terminal:
    """Audit and publish a change of a terminal (a registration when `before` is None)."""
    name = terminal_name(after.customer_id, after.id)
    tx.audit(name, action, before, after)
    tx.event(EventType.TERMINAL_REGISTERED if before is None
             else EventType.TERMINAL_STATE_CHANGED, name, customer, after)
    return after


async def create(tx: Tx, customer_id: str, subscription_id: str, serial: str,
                 location: tuple[float, float, float]) -> Terminal:
    """Three statements: lock the subscription (with its customer), insert the terminal
    unless its serial number is taken, and (at the end) count it on the subscription."""
    audience = write_audience(tx.principal)
    sub = await store.subscription_for_terminal(tx.session, customer_id, subscription_id)
    name = subscription_name(customer_id, subscription_id)
    if sub is None or not admits(audience, sub.c_tenant, sub.c_partner):
        await customer_row(tx.session, customer_id, audience)  # NOT_FOUND if unseen
        raise NotFound(f"{name} does not exist", reason="SUBSCRIPTION_NOT_FOUND",
                       metadata={"resource": name})
    sub_rules.check_admits_terminal(sub._mapping, name)
    after = Terminal(id=rows.new_id(), customer_id=customer_id,
                     subscription_id=subscription_id, serial_number=serial,
                     latitude_deg=location[0], longitude_deg=location[1],
                     altitude_m=location[2], state=rules.REGISTERED, create_time=tx.now,
                     update_time=tx.now, version=1)
    if not await store.insert_terminal(tx.session, after):
        raise AlreadyExists(f"a terminal with serial number {serial} already exists",
                            reason="SERIAL_NUMBER_TAKEN",
                            violations=[("terminal.serial_number", "is already registered")])
    tx.writes.append(("terminal_count", {"delta": 1, "id": subscription_id}))
    return terminal_changed(tx, Owner(customer_id, sub.c_tenant, sub.c_partner), after,
                            "terminal.create", None)


async def transition(tx: Tx, customer_id: str, terminal_id: str, action: str,
                     etag: str) -> Terminal:
    """The terminal's row, its subscription's state and its customer in one locked read;
    the updates go out with the audit record and the event (at the end)."""
    audience = write_audience(tx.principal)
    name = terminal_name(customer_id, terminal_id)
    found = await store.terminal_for_change(tx.session, customer_id, terminal_id,
                                            counting=action == "decommission")
    if found is None or not admits(audience, found.c_tenant, found.c_partner):
        await customer_row(tx.session, customer_id, audience)  # NOT_FOUND if unseen
        raise store.not_found(customer_id, terminal_id)
    before = rows.terminal(found._mapping)
    check_etag(etag, before.version, name)
    new_state = rules.terminal_next(before.state, action, name)
    if action == "activate":
        sub_rules.check_serves_terminals(
            found.s_state, name, subscription_name(customer_id, before.subscription_id))
    delta = rules.count_change(before.state, new_state)
    if delta:
        tx.writes.append(("terminal_count", {"delta": delta, "id": before.subscription_id}))
    after = before.changed(state=new_state, version=before.version + 1, update_time=tx.now)
    tx.writes.append(("terminal", {"state": str(new_state), "version": after.version,
                                   "update_time": tx.now, "id": terminal_id}))
    return terminal_changed(tx, Owner(customer_id, found.c_tenant, found.c_partner), after,
                            f"terminal.{action}", before)

