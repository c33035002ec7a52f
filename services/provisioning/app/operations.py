"""The operations worker: applies queued plan changes, quantity changes and cancellations.
Any replica may run it; each operation applies once (its row is locked and must still be
RUNNING), and an operation whose rule no longer holds ends FAILED with the error."""

from __future__ import annotations

from shared.auth import Principal
from shared.errors import DomainError

from ..domain import subscriptions as rules
from ..domain import terminals as terminal_rules
from ..domain.events import EventType
from ..domain.names import operation_name, subscription_name
from ..domain.subscriptions import OperationKind, OperationState
from ..store import partners as plan_store
from ..store import rows
from ..store import subscriptions as store
from ..store.queries import locked
from ..store.tables import CustomerRow, OperationRow, SubscriptionRow
from .subscriptions import changed, owner
from .terminals import terminal_changed
from .unit_of_work import SYSTEM, Tx, UnitOfWork

_EVENTS = {OperationKind.CHANGE_PLAN: EventType.SUBSCRIPTION_PLAN_CHANGED,
           OperationKind.CHANGE_QUANTITY: EventType.SUBSCRIPTION_QUANTITY_CHANGED,
           OperationKind.CANCEL: EventType.SUBSCRIPTION_UNSUBSCRIBED}


async def run_pending(uow: UnitOfWork) -> int:
    """Apply every RUNNING operation; returns how many this call applied."""
    done = 0
    for op_id, sub_id in await store.pending_operations(uow.store.sessions):
        done += await uow.background(lambda tx, o=op_id, s=sub_id: apply(tx, o, s))
    return done


async def apply(tx: Tx, op_id: str, subscription_id: str) -> int:
    row = await locked(tx.session, SubscriptionRow, SubscriptionRow.id == subscription_id)
    op = await locked(tx.session, OperationRow, OperationRow.id == op_id)
    if row is None or op is None or op.state != OperationState.RUNNING:
        return 0
    customer = await tx.session.get(CustomerRow, row.customer_id)
    assert customer is not None
    name = subscription_name(row.customer_id, row.id)
    op_before = rows.operation(op)
    before = rows.subscription(row)
    tx.principal = Principal(subject=op.requested_by, scopes=SYSTEM.scopes,
                             tenant=SYSTEM.tenant, expires_at=SYSTEM.expires_at)
    kind = OperationKind(op.kind)
    try:
        rules.subscription_next(row.state, kind.action, name)
        if kind is OperationKind.CHANGE_PLAN:
            plan = await plan_store.plan_row(tx.session, op.plan_id)
            rules.check_plan_change(row.plan_id, row.quantity, op.plan_id,
                                    rows.terms_of(plan), name)
            row.plan_id, row.plan_revision = plan.id, plan.revision
            rows.set_terms(row, rows.terms_of(plan))
        elif kind is OperationKind.CHANGE_QUANTITY:
            rules.check_quantity_change(rows.terms_of(row), row.state, row.quantity,
                                        row.terminal_count, op.quantity)
            row.quantity = op.quantity
        else:
            await decommission_all(tx, customer, row)
            row.state = rules.UNSUBSCRIBED
            row.state_reason = op.reason or "cancelled"
            row.grace_end_time = None
        row.version += 1
        row.update_time = tx.now
        changed(tx, _EVENTS[kind], customer, row, f"subscription.{op.kind.lower()}", before)
        op.state = OperationState.SUCCEEDED
    except DomainError as error:
        op.state = OperationState.FAILED
        op.error_code = error.code
        op.error_reason = error.reason
        op.error_message = error.message
    op.end_time = tx.now
    tx.audit(operation_name(row.customer_id, row.id, op.id), "operation.finish", op_before,
             rows.operation(op))
    return 1


async def decommission_all(tx: Tx, customer: CustomerRow, row: SubscriptionRow) -> None:
    """Decommission every terminal still counted on a subscription that ends."""
    for terminal in await store.live_terminals(tx.session, row.id,
                                               terminal_rules.DECOMMISSIONED):
        before = rows.terminal(terminal)
        terminal.state = terminal_rules.DECOMMISSIONED
        terminal.version += 1
        terminal.update_time = tx.now
        terminal_changed(tx, owner(customer), rows.terminal(terminal), "terminal.decommission",
                         before)
    row.terminal_count = 0
