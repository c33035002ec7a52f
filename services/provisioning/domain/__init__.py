"""Provisioning's domain: records and every rule, as plain functions and values.

No grpc, no SQLAlchemy: everything here is decided from plain values, so it is tested alone
(tests/provisioning/test_domain.py) and used by the application layer, which applies these
decisions inside database transactions that hold the relevant row locks, and by the store's
one-statement fast path, which renders the same predicates into its SQL.

One module per concern: `access` (scopes, audiences), `plans`, `subscriptions` (and their
operations), `terminals`, `referrals`, `entitlements`, `events`, `records` (the typed
records), `names` (resource names, etags), `predicates` (rules as evaluable expressions),
`validation` (checks of user input). This package re-exports their public names.
"""

from .access import (
    ENTITLEMENTS,
    EVENTS,
    OPERATOR,
    PARTNER,
    READ,
    READERS,
    WRITE,
    WRITERS,
    Audience,
    admits,
    manage_audience,
    read_audience,
    sees_referral,
    write_audience,
)
from .entitlements import Entitlement, decide_entitlement
from .events import IDEMPOTENCY_RETENTION, EventType
from .plans import MAX_BANDWIDTH_MBPS, MAX_QUANTITY, PRIORITY_CLASSES, PlanTerms, PriorityClass
from .referrals import (
    ACCEPTED,
    ACTIVE_STATUS,
    CLOSED,
    DECLINED,
    EXPIRED,
    INBOUND,
    LOST,
    NEW,
    OUTBOUND,
    R_PENDING,
    RECEIVED,
    REFERRAL_EDGES,
    REFERRAL_MOVES,
    SUBSTATUSES,
    WON,
    Direction,
    ReferralStatus,
    Substatus,
    referral_mirror,
    referral_next,
)
from .subscriptions import (
    ACTIVATION_WINDOW,
    GRACE_PERIOD,
    PENDING,
    SUBSCRIBED,
    SUBSCRIPTION_ACTIONS,
    SUBSCRIPTION_EDGES,
    SUBSCRIPTION_STATES,
    SUSPENDED,
    UNSUBSCRIBED,
    OperationKind,
    OperationState,
    SubscriptionState,
    check_activation_window,
    check_grace_period,
    subscription_next,
)
from .terminals import (
    ACTIVE,
    DECOMMISSIONED,
    PROVISIONED,
    REGISTERED,
    T_SUSPENDED,
    TERMINAL_ACTIONS,
    TERMINAL_EDGES,
    TERMINAL_STATES,
    TerminalState,
    counts_against_quantity,
    terminal_next,
)

__all__ = [
    "ACCEPTED", "ACTIVATION_WINDOW", "ACTIVE", "ACTIVE_STATUS", "CLOSED", "DECLINED",
    "DECOMMISSIONED", "ENTITLEMENTS", "EVENTS", "EXPIRED", "GRACE_PERIOD",
    "IDEMPOTENCY_RETENTION", "INBOUND", "LOST", "MAX_BANDWIDTH_MBPS", "MAX_QUANTITY", "NEW",
    "OPERATOR", "OUTBOUND", "PARTNER", "PENDING", "PRIORITY_CLASSES", "PROVISIONED",
    "READ", "READERS", "RECEIVED", "REFERRAL_EDGES", "REFERRAL_MOVES", "REGISTERED",
    "R_PENDING", "SUBSCRIBED", "SUBSCRIPTION_ACTIONS", "SUBSCRIPTION_EDGES",
    "SUBSCRIPTION_STATES", "SUBSTATUSES", "SUSPENDED", "TERMINAL_ACTIONS", "TERMINAL_EDGES",
    "TERMINAL_STATES", "T_SUSPENDED", "UNSUBSCRIBED", "WON", "WRITE", "WRITERS", "Audience",
    "Direction", "Entitlement", "EventType", "OperationKind", "OperationState", "PlanTerms",
    "PriorityClass", "ReferralStatus", "SubscriptionState", "Substatus", "TerminalState",
    "admits", "check_activation_window", "check_grace_period", "counts_against_quantity",
    "decide_entitlement", "manage_audience", "read_audience", "referral_mirror",
    "referral_next", "sees_referral", "subscription_next", "terminal_next",
    "write_audience",
]
