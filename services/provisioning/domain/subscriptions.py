"""Subscriptions (Azure Marketplace SaaS Fulfillment v2): states, moves and every rule a
purchase, an activation, a suspension or a plan/quantity change must keep.

States are the proto enum value names without their prefix (`SUBSCRIBED`...). Which
subscriptions take another terminal is a predicate (`TAKES_TERMINALS`, `HAS_ROOM`), so
the PostgreSQL fast path renders the same rule into its SQL (`domain/predicates.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

from .plans import PlanTerms
from .predicates import And, In, Less, Not

#: SaaS Fulfillment: a bought subscription must be activated within 30 days or it lapses.
ACTIVATION_WINDOW = timedelta(days=30)
#: A suspended subscription can be reinstated for this long.
GRACE_PERIOD = timedelta(days=30)


class SubscriptionState(StrEnum):
    PENDING_FULFILLMENT_START = "PENDING_FULFILLMENT_START"
    SUBSCRIBED = "SUBSCRIBED"
    SUSPENDED = "SUSPENDED"
    UNSUBSCRIBED = "UNSUBSCRIBED"


PENDING = SubscriptionState.PENDING_FULFILLMENT_START
SUBSCRIBED = SubscriptionState.SUBSCRIBED
SUSPENDED = SubscriptionState.SUSPENDED
UNSUBSCRIBED = SubscriptionState.UNSUBSCRIBED
SUBSCRIPTION_STATES = tuple(SubscriptionState)

#: action -> (states it may start from, state it leads to)
SUBSCRIPTION_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "activate": (frozenset({PENDING}), SUBSCRIBED),
    "suspend": (frozenset({SUBSCRIBED}), SUSPENDED),
    "reinstate": (frozenset({SUSPENDED}), SUBSCRIBED),
    "change_plan": (frozenset({SUBSCRIBED}), SUBSCRIBED),
    "change_quantity": (frozenset({SUBSCRIBED}), SUBSCRIBED),
    "cancel": (frozenset({PENDING, SUBSCRIBED, SUSPENDED}), UNSUBSCRIBED),
    "lapse": (frozenset({PENDING}), UNSUBSCRIBED),
}
#: Every (from, to) state pair a subscription may ever take.
SUBSCRIPTION_EDGES = frozenset(
    (start, end) for starts, end in SUBSCRIPTION_ACTIONS.values() for start in starts)

#: A subscription takes terminals unless it ended.
TAKES_TERMINALS = Not(In("state", {UNSUBSCRIBED}))
#: ... and while it has fewer terminals than it bought.
HAS_ROOM = Less("terminal_count", "quantity")
#: Both: what registering a terminal needs of its subscription's row.
ADMITS_TERMINAL = And(TAKES_TERMINALS, HAS_ROOM)
#: A terminal on it may be activated.
SERVES_TERMINALS = In("state", {SUBSCRIBED})


def subscription_next(state: str, action: str, resource: str) -> SubscriptionState:
    """The state after `action`, or FAILED_PRECONDITION naming the current state."""
    starts, end = SUBSCRIPTION_ACTIONS[action]
    if state not in starts:
        raise FailedPrecondition(
            f"cannot {action.replace('_', ' ')} {resource}: it is {state}"
            f" (allowed from {', '.join(sorted(starts))})",
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state, "action": action},
        )
    return SubscriptionState(end)


def check_activation_window(now: datetime, deadline: datetime, resource: str) -> None:
    if now > deadline:
        raise FailedPrecondition(
            f"the activation window of {resource} closed at {deadline.isoformat()}",
            reason="ACTIVATION_WINDOW_CLOSED",
            metadata={"resource": resource, "current_state": PENDING,
                      "activation_deadline": deadline.isoformat()})


def check_grace_period(now: datetime, grace_end: datetime | None, resource: str) -> None:
    if grace_end is not None and now > grace_end:
        raise FailedPrecondition(
            f"the grace period of {resource} ended at {grace_end.isoformat()}",
            reason="GRACE_PERIOD_ENDED",
            metadata={"resource": resource, "current_state": SUSPENDED,
                      "grace_end_time": grace_end.isoformat()})


def check_purchase(terms: PlanTerms, quantity: int) -> None:
    """A purchase buys a quantity within the plan's bounds."""
    bad = terms.quantity_problem(quantity)
    if bad:
        raise InvalidArgument(f"subscription.quantity {bad}",
                              violations=[("subscription.quantity", bad)])


def activation(state: str, deadline: datetime, plan_id: str, quantity: int, *,
               bought_plan: str, bought_quantity: int, now: datetime,
               resource: str) -> SubscriptionState:
    """The state an activation leads to: from PENDING, inside the activation window, and
    naming exactly the plan and quantity bought (`ACTIVATION_MISMATCH` otherwise)."""
    new_state = subscription_next(state, "activate", resource)
    check_activation_window(now, deadline, resource)
    mismatch = []
    if plan_id != bought_plan:
        mismatch.append(("plan", f"must be the plan bought, plans/{bought_plan}"))
    if quantity != bought_quantity:
        mismatch.append(("quantity", f"must be the quantity bought, {bought_quantity}"))
    if mismatch:
        raise InvalidArgument("the activation does not match the purchase",
                              reason="ACTIVATION_MISMATCH", violations=mismatch)
    return new_state


def check_plan_change(current_plan: str, quantity: int, plan_id: str, terms: PlanTerms,
                      resource: str) -> None:
    """A plan change names another plan, whose bounds hold the quantity bought."""
    if plan_id == current_plan:
        raise InvalidArgument(f"{resource} already has plans/{plan_id}",
                              violations=[("plan", "is already the subscription's plan")])
    bad = terms.quantity_problem(quantity)
    if bad:
        raise InvalidArgument(
            f"the quantity {quantity} does not fit plans/{plan_id}",
            reason="QUANTITY_OUT_OF_PLAN_BOUNDS",
            violations=[("plan", f"the subscription's quantity {bad}")])


def check_quantity_change(terms: PlanTerms, state: str, current: int, terminal_count: int,
                          quantity: int) -> None:
    """A quantity change stays in the plan's bounds, above the terminals in use, and
    changes the quantity."""
    bad = terms.quantity_problem(quantity)
    if bad:
        raise InvalidArgument(f"quantity {bad}", reason="QUANTITY_OUT_OF_PLAN_BOUNDS",
                              violations=[("quantity", bad)])
    if quantity < terminal_count:
        raise FailedPrecondition(
            f"quantity {quantity} is below the {terminal_count} terminals in use; "
            "decommission terminals first", reason="QUANTITY_BELOW_TERMINAL_COUNT",
            metadata={"current_state": state, "terminal_count": str(terminal_count)})
    if quantity == current:
        raise InvalidArgument(f"the quantity is already {quantity}",
                              violations=[("quantity", "is already the quantity")])


def check_admits_terminal(subscription: Mapping[str, Any], resource: str) -> None:
    """Registering a terminal: the subscription has not ended (`SUBSCRIPTION_ENDED`) and
    has room (`QUANTITY_EXCEEDED`); the same predicates as the fast path's SQL."""
    if not TAKES_TERMINALS.holds(subscription):
        raise FailedPrecondition(f"{resource} is UNSUBSCRIBED: no terminals can join it",
                                 reason="SUBSCRIPTION_ENDED",
                                 metadata={"resource": resource,
                                           "current_state": subscription["state"]})
    if not HAS_ROOM.holds(subscription):
        count, quantity = subscription["terminal_count"], subscription["quantity"]
        raise ResourceExhausted(
            f"{resource} already has {count} of {quantity} terminals; "
            "raise the quantity or decommission a terminal", reason="QUANTITY_EXCEEDED",
            metadata={"resource": resource, "quantity": str(quantity),
                      "terminal_count": str(count)})


def check_serves_terminals(state: str, terminal: str, resource: str) -> None:
    """Activating a terminal needs its subscription SUBSCRIBED (`SUBSCRIPTION_NOT_ACTIVE`)."""
    if not SERVES_TERMINALS.holds({"state": state}):
        raise FailedPrecondition(
            f"cannot activate {terminal}: its subscription {resource} is {state}",
            reason="SUBSCRIPTION_NOT_ACTIVE",
            metadata={"resource": resource, "current_state": state})


# --- operations (long-running plan and quantity changes, cancellations) ---------------------

class OperationKind(StrEnum):
    CHANGE_PLAN = "CHANGE_PLAN"
    CHANGE_QUANTITY = "CHANGE_QUANTITY"
    CANCEL = "CANCEL"

    @property
    def action(self) -> str:
        """The subscription action the operation applies."""
        return self.name.lower()


class OperationState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


def check_no_running(running: str | None, state: str, resource: str) -> None:
    """One operation at a time: plan and quantity never change at once."""
    if running is not None:
        raise FailedPrecondition(
            f"{resource} already has a running operation ({resource}/operations/{running}); "
            "plan and quantity never change at once", reason="OPERATION_IN_PROGRESS",
            metadata={"resource": resource, "current_state": state,
                      "operation": f"{resource}/operations/{running}"})
