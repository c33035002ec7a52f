"""Pure provisioning logic: state machines, plan terms and access rules.

No grpc, no sqlalchemy: everything here is decided from plain values, so it can be tested
alone (tests/provisioning/test_domain.py) and reused by the store, which applies these
decisions inside database transactions that hold the relevant row locks.

States are the proto enum value names without their prefix (`SUBSCRIBED`, `ACTIVE`...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from shared.auth import Principal
from shared.errors import FailedPrecondition, InvalidArgument

from . import validation

#: SaaS Fulfillment: a bought subscription must be activated within 30 days or it lapses.
ACTIVATION_WINDOW = timedelta(days=30)
#: A suspended subscription can be reinstated for this long.
GRACE_PERIOD = timedelta(days=30)
#: Idempotency keys are kept at least this long (the purge removes older ones).
IDEMPOTENCY_RETENTION = timedelta(hours=48)

# --- subscriptions (Azure Marketplace SaaS Fulfillment v2) ---------------------------------

PENDING = "PENDING_FULFILLMENT_START"
SUBSCRIBED = "SUBSCRIBED"
SUSPENDED = "SUSPENDED"
UNSUBSCRIBED = "UNSUBSCRIBED"
SUBSCRIPTION_STATES = (PENDING, SUBSCRIBED, SUSPENDED, UNSUBSCRIBED)

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


def subscription_next(state: str, action: str, resource: str) -> str:
    """The state after `action`, or FAILED_PRECONDITION naming the current state."""
    starts, end = SUBSCRIPTION_ACTIONS[action]
    if state not in starts:
        raise FailedPrecondition(
            f"cannot {action.replace('_', ' ')} {resource}: it is {state}"
            f" (allowed from {', '.join(sorted(starts))})",
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state, "action": action},
        )
    return end


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


# --- terminals ------------------------------------------------------------------------------

REGISTERED = "REGISTERED"
PROVISIONED = "PROVISIONED"
ACTIVE = "ACTIVE"
T_SUSPENDED = "SUSPENDED"
DECOMMISSIONED = "DECOMMISSIONED"
TERMINAL_STATES = (REGISTERED, PROVISIONED, ACTIVE, T_SUSPENDED, DECOMMISSIONED)

TERMINAL_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "provision": (frozenset({REGISTERED}), PROVISIONED),
    "activate": (frozenset({PROVISIONED, T_SUSPENDED}), ACTIVE),
    "suspend": (frozenset({ACTIVE}), T_SUSPENDED),
    "decommission": (frozenset({REGISTERED, PROVISIONED, ACTIVE, T_SUSPENDED}), DECOMMISSIONED),
}
TERMINAL_EDGES = frozenset(
    (start, end) for starts, end in TERMINAL_ACTIONS.values() for start in starts)


def terminal_next(state: str, action: str, resource: str) -> str:
    starts, end = TERMINAL_ACTIONS[action]
    if state not in starts:
        raise FailedPrecondition(
            f"cannot {action} {resource}: it is {state}"
            f" (allowed from {', '.join(sorted(starts))})",
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state, "action": action},
        )
    return end


def counts_against_quantity(terminal_state: str) -> bool:
    return terminal_state != DECOMMISSIONED


# --- co-sell referrals (Partner Center) -----------------------------------------------------

NEW, ACTIVE_STATUS, CLOSED = "NEW", "ACTIVE", "CLOSED"
R_PENDING, RECEIVED, ACCEPTED = "PENDING", "RECEIVED", "ACCEPTED"
DECLINED, WON, LOST, EXPIRED = "DECLINED", "WON", "LOST", "EXPIRED"
OUTBOUND, INBOUND = "OUTBOUND", "INBOUND"

SUBSTATUSES = {
    NEW: frozenset({R_PENDING, RECEIVED}),
    ACTIVE_STATUS: frozenset({ACCEPTED}),
    CLOSED: frozenset({DECLINED, WON, LOST, EXPIRED}),
}

#: What a partner may do to its own record, by direction and current (status, substatus).
REFERRAL_MOVES: dict[tuple[str, tuple[str, str]], frozenset[tuple[str, str]]] = {
    # The creator waits for the other side; it can withdraw (lost) or let it expire.
    (OUTBOUND, (NEW, R_PENDING)): frozenset({(CLOSED, LOST), (CLOSED, EXPIRED)}),
    # The receiver accepts or declines.
    (INBOUND, (NEW, RECEIVED)): frozenset(
        {(ACTIVE_STATUS, ACCEPTED), (CLOSED, DECLINED), (CLOSED, EXPIRED)}),
    (OUTBOUND, (ACTIVE_STATUS, ACCEPTED)): frozenset(
        {(CLOSED, WON), (CLOSED, LOST), (CLOSED, EXPIRED)}),
    (INBOUND, (ACTIVE_STATUS, ACCEPTED)): frozenset(
        {(CLOSED, WON), (CLOSED, LOST), (CLOSED, EXPIRED)}),
}

#: Every (from, to) pair a referral record may take, moves and mirrored moves alike.
REFERRAL_EDGES = frozenset(
    {(start, end) for (_, start), ends in REFERRAL_MOVES.items() for end in ends}
    | {((NEW, R_PENDING), (ACTIVE_STATUS, ACCEPTED)), ((NEW, R_PENDING), (CLOSED, DECLINED)),
       ((NEW, RECEIVED), (CLOSED, LOST))})


def referral_next(direction: str, current: tuple[str, str], wanted: tuple[str, str],
                  resource: str) -> tuple[str, str]:
    """Validate a partner's own status change; FAILED_PRECONDITION names the current state."""
    status, substatus = wanted
    if substatus not in SUBSTATUSES.get(status, ()):
        raise InvalidArgument(
            f"substatus {substatus} does not belong to status {status}",
            violations=[("referral.substatus",
                         f"must be one of {', '.join(sorted(SUBSTATUSES.get(status, ())))} "
                         f"for status {status}")])
    allowed = REFERRAL_MOVES.get((direction, current), frozenset())
    if wanted not in allowed:
        state = "/".join(current)
        raise FailedPrecondition(
            f"cannot move {direction.lower()} {resource} from {state} to {'/'.join(wanted)}"
            + (f" (allowed: {', '.join('/'.join(m) for m in sorted(allowed))})" if allowed
               else " (it is final or awaits the other partner)"),
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state,
                      "requested_state": "/".join(wanted)})
    return wanted


def referral_mirror(counterpart: tuple[str, str], new: tuple[str, str]) -> tuple[str, str] | None:
    """The counterparty record's new state after one side moved to `new` (None: unchanged)."""
    if counterpart[0] == CLOSED:
        return None
    return new


# --- plans ------------------------------------------------------------------------------------

PRIORITY_CLASSES = ("GOVERNMENT_PRIORITY", "ENTERPRISE", "BEST_EFFORT")
MAX_QUANTITY = 100_000
MAX_BANDWIDTH_MBPS = 100_000.0


@dataclass(frozen=True)
class PlanTerms:
    """What a plan sells; a subscription keeps a copy of the terms it bought."""

    bandwidth_mbps: float
    priority_class: str
    min_quantity: int
    max_quantity: int
    price_currency: str
    price_units: int
    price_nanos: int
    regions: tuple[str, ...] = field(default_factory=tuple)

    def problems(self, prefix: str = "terms") -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not (0 < self.bandwidth_mbps <= MAX_BANDWIDTH_MBPS):
            out.append((f"{prefix}.bandwidth_mbps",
                        f"must be above 0 and at most {MAX_BANDWIDTH_MBPS:g}"))
        if self.priority_class not in PRIORITY_CLASSES:
            out.append((f"{prefix}.priority_class", "is required"))
        if not 1 <= self.min_quantity <= MAX_QUANTITY:
            out.append((f"{prefix}.min_quantity", f"must be between 1 and {MAX_QUANTITY}"))
        if not self.min_quantity <= self.max_quantity <= MAX_QUANTITY:
            out.append((f"{prefix}.max_quantity",
                        f"must be between min_quantity and {MAX_QUANTITY}"))
        out += [(f"{prefix}.unit_price.{f}", d) for f, d in validation.money(
            self.price_currency, self.price_units, self.price_nanos)]
        if len(self.regions) > 100:
            out.append((f"{prefix}.regions", "at most 100 regions"))
        for i, name in enumerate(self.regions):
            bad = validation.region(name)
            if bad:
                out.append((f"{prefix}.regions[{i}]", bad))
        if len(set(self.regions)) != len(self.regions):
            out.append((f"{prefix}.regions", "must not repeat a region"))
        return out

    def quantity_problem(self, quantity: int) -> str | None:
        if not self.min_quantity <= quantity <= self.max_quantity:
            return (f"must be between the plan's bounds {self.min_quantity} and "
                    f"{self.max_quantity} (got {quantity})")
        return None

    def reaches(self, region: str) -> bool:
        return not self.regions or region in self.regions

    def as_dict(self) -> dict:
        data = asdict(self)
        data["regions"] = list(self.regions)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PlanTerms:
        return cls(**{**data, "regions": tuple(data.get("regions", ()))})


# --- entitlements -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Entitlement:
    allowed: bool
    reason: str
    message: str
    max_bandwidth_mbps: float = 0.0
    priority_class: str = ""
    subscription: str = ""
    customer_tenant: str = ""
    #: (latitude_deg, longitude_deg, altitude_m) of the terminal, when it exists.
    terminal_location: tuple[float, float, float] | None = None


def decide_entitlement(*, terminal_state: str | None, subscription_state: str | None,
                       terms: PlanTerms | None, bandwidth_mbps: float, region: str,
                       subscription: str = "") -> Entitlement:
    """Allowed or not, and why; the checks in the order a link broker would want them."""
    if terminal_state is None or terms is None or subscription_state is None:
        return Entitlement(False, "TERMINAL_NOT_FOUND", "no such terminal for this customer")
    limits = {"max_bandwidth_mbps": terms.bandwidth_mbps,
              "priority_class": terms.priority_class, "subscription": subscription}
    if subscription_state != SUBSCRIBED:
        return Entitlement(False, "SUBSCRIPTION_NOT_ACTIVE",
                           f"the subscription is {subscription_state}", **limits)
    if terminal_state != ACTIVE:
        return Entitlement(False, "TERMINAL_NOT_ACTIVE", f"the terminal is {terminal_state}",
                           **limits)
    if bandwidth_mbps > terms.bandwidth_mbps:
        return Entitlement(False, "BANDWIDTH_EXCEEDS_PLAN",
                           f"{bandwidth_mbps:g} Mbit/s exceeds the plan's "
                           f"{terms.bandwidth_mbps:g} Mbit/s", **limits)
    if not terms.reaches(region):
        return Entitlement(False, "REGION_NOT_IN_PLAN",
                           f"the plan does not reach region {region}", **limits)
    return Entitlement(True, "ENTITLED", "entitled", **limits)


# --- access rules ---------------------------------------------------------------------------

OPERATOR = "operator"
PARTNER = "partner"
READ = "provisioning.read"
WRITE = "provisioning.write"
ENTITLEMENTS = "provisioning.entitlements"
EVENTS = "provisioning.events"


@dataclass(frozen=True)
class Audience:
    """Which customers a caller may see: everything, or those of some tenants/partners."""

    everything: bool
    tenant: str | None  # customers whose `tenant` is this
    partner: str | None  # customers whose managing partner is this


def read_audience(principal: Principal, *, all_scopes: Iterable[str] = (OPERATOR,)) -> Audience:
    if principal.has(*all_scopes):
        return Audience(True, None, None)
    return Audience(
        False,
        principal.tenant if principal.has(READ, WRITE) else None,
        principal.tenant if principal.has(PARTNER) else None,
    )


def write_audience(principal: Principal) -> Audience:
    if principal.has(OPERATOR):
        return Audience(True, None, None)
    return Audience(False, principal.tenant if principal.has(WRITE) else None,
                    principal.tenant if principal.has(PARTNER) else None)


def manage_audience(principal: Principal) -> Audience:
    """Suspend and reinstate: the publisher side only (operator, managing partner)."""
    if principal.has(OPERATOR):
        return Audience(True, None, None)
    return Audience(False, None, principal.tenant if principal.has(PARTNER) else None)


def admits(audience: Audience, customer_tenant: str, customer_partner: str | None) -> bool:
    return audience.everything or (
        audience.tenant is not None and audience.tenant == customer_tenant) or (
        audience.partner is not None and audience.partner == customer_partner)
