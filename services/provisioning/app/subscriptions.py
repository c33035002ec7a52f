"""Use cases of subscriptions: buy, activate, suspend, reinstate, and queue a plan change,
a quantity change or a cancellation (applied by `operations`).

Each use case is a transactional `work(tx)` for the unit of work (the rules from
`domain.subscriptions`, the rows from `store.subscriptions`); buying and activating also
have their one-statement PostgreSQL form (`create_fast`, `activate_fast`), which the unit
of work tries first when it can.
"""

from __future__ import annotations

from ..domain import subscriptions as rules
from ..domain.access import manage_audience, write_audience
from ..domain.events import EventType
from ..domain.names import operation_name, subscription_name
from ..domain.records import Operation, Subscription
from ..domain.subscriptions import OperationKind, OperationState
from ..store import fast_subscriptions, rows
from ..store import partners as plan_store
from ..store import subscriptions as store
from ..store.queries import customer_row
from ..store.tables import CustomerRow, SubscriptionRow
from .unit_of_work import Owner, Tx

#: The one-statement forms (`store/fast.py`): (store, call, *the use case's arguments).
create_fast = fast_subscriptions.create
activate_fast = fast_subscriptions.activate


def owner(customer: CustomerRow) -> Owner:
    return Owner(customer.id, customer.tenant, customer.partner_id)


def changed(tx: Tx, event: str | None, customer: CustomerRow, row: SubscriptionRow,
            action: str, before: Subscription | None) -> Subscription:
    """Audit a change of `row` (and publish `event`); returns the subscription after it."""
    after = rows.subscription(row)
    name = subscription_name(row.customer_id, row.id)
    tx.audit(name, action, before, after)
    if event:
        tx.event(event, name, owner(customer), after)
    return after


def set_state(tx: Tx, row: SubscriptionRow, state: str, reason: str) -> None:
    row.state = state
    row.state_reason = reason
    row.version += 1
    row.update_time = tx.now


# --- buy --------------------------------------------------------------------------------------

async def create(tx: Tx, customer_id: str, plan_id: str, quantity: int,
                 display_name: str) -> Subscription:
    customer = await customer_row(tx.session, customer_id, write_audience(tx.principal))
    plan = await plan_store.plan_row(tx.session, plan_id, "subscription.plan")
    terms = rows.terms_of(plan)
    rules.check_purchase(terms, quantity)
    record = Subscription(
        id=rows.new_id(), customer_id=customer_id, display_name=display_name, plan_id=plan_id,
        plan_revision=plan.revision, terms=terms, quantity=quantity, terminal_count=0,
        state=rules.PENDING, activation_deadline=tx.now + rules.ACTIVATION_WINDOW,
        grace_end_time=None, state_reason="", create_time=tx.now, update_time=tx.now,
        version=1)
    row = await store.insert_subscription(tx.session, record)
    return changed(tx, EventType.SUBSCRIPTION_CREATED, customer, row, "subscription.create",
                   None)


# --- activate, suspend, reinstate -----------------------------------------------------------

async def activate(tx: Tx, customer_id: str, subscription_id: str, plan_id: str,
                   quantity: int) -> Subscription:
    customer, row = await store.locked_subscription(tx.session, customer_id, subscription_id,
                                                    write_audience(tx.principal))
    new_state = rules.activation(
        row.state, row.activation_deadline, plan_id, quantity, bought_plan=row.plan_id,
        bought_quantity=row.quantity, now=tx.now,
        resource=subscription_name(customer_id, subscription_id))
    before = rows.subscription(row)
    set_state(tx, row, new_state, "")
    return changed(tx, EventType.SUBSCRIPTION_ACTIVATED, customer, row,
                   "subscription.activate", before)


async def suspend(tx: Tx, customer_id: str, subscription_id: str, reason: str) -> Subscription:
    customer, row = await store.locked_subscription(tx.session, customer_id, subscription_id,
                                                    manage_audience(tx.principal))
    name = subscription_name(customer_id, subscription_id)
    new_state = rules.subscription_next(row.state, "suspend", name)
    before = rows.subscription(row)
    set_state(tx, row, new_state, reason)
    row.grace_end_time = tx.now + rules.GRACE_PERIOD
    return changed(tx, EventType.SUBSCRIPTION_SUSPENDED, customer, row,
                   "subscription.suspend", before)


async def reinstate(tx: Tx, customer_id: str, subscription_id: str) -> Subscription:
    customer, row = await store.locked_subscription(tx.session, customer_id, subscription_id,
                                                    manage_audience(tx.principal))
    name = subscription_name(customer_id, subscription_id)
    new_state = rules.subscription_next(row.state, "reinstate", name)
    rules.check_grace_period(tx.now, row.grace_end_time, name)
    before = rows.subscription(row)
    set_state(tx, row, new_state, "")
    row.grace_end_time = None
    return changed(tx, EventType.SUBSCRIPTION_REINSTATED, customer, row,
                   "subscription.reinstate", before)


# --- queue an operation ----------------------------------------------------------------------

async def start_operation(tx: Tx, customer_id: str, subscription_id: str, kind: str, *,
                          plan_id: str = "", quantity: int = 0, reason: str = "") -> Operation:
    """Validate and queue a plan change, quantity change or cancellation."""
    _, row = await store.locked_subscription(tx.session, customer_id, subscription_id,
                                             write_audience(tx.principal))
    name = subscription_name(customer_id, subscription_id)
    kind = OperationKind(kind)
    rules.subscription_next(row.state, kind.action, name)
    rules.check_no_running(await store.running_operation(tx.session, subscription_id),
                           row.state, name)
    if kind is OperationKind.CHANGE_PLAN:
        plan = await plan_store.plan_row(tx.session, plan_id)
        rules.check_plan_change(row.plan_id, row.quantity, plan_id, rows.terms_of(plan), name)
    elif kind is OperationKind.CHANGE_QUANTITY:
        rules.check_quantity_change(rows.terms_of(row), row.state, row.quantity,
                                    row.terminal_count, quantity)
    op = await store.insert_operation(tx.session, dict(
        id=rows.new_id(), subscription_id=subscription_id, customer_id=customer_id,
        kind=str(kind), state=str(OperationState.RUNNING), plan_id=plan_id,
        quantity=quantity, reason=reason, error_code=0, error_reason="", error_message="",
        requested_by=tx.principal.subject, create_time=tx.now, end_time=None), row.state)
    record = rows.operation(op)
    tx.audit(operation_name(customer_id, subscription_id, op.id), "operation.create", None,
             record)
    tx.kick_worker = True
    return record
