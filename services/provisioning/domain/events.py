"""The event feed's vocabulary: what a change publishes."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

#: Idempotency keys are kept at least this long (the purge removes older ones).
IDEMPOTENCY_RETENTION = timedelta(hours=48)


class EventType(StrEnum):
    """What the event feed publishes (the proto's Event.Type without its prefix)."""

    SUBSCRIPTION_CREATED = "SUBSCRIPTION_CREATED"
    SUBSCRIPTION_ACTIVATED = "SUBSCRIPTION_ACTIVATED"
    SUBSCRIPTION_SUSPENDED = "SUBSCRIPTION_SUSPENDED"
    SUBSCRIPTION_REINSTATED = "SUBSCRIPTION_REINSTATED"
    SUBSCRIPTION_PLAN_CHANGED = "SUBSCRIPTION_PLAN_CHANGED"
    SUBSCRIPTION_QUANTITY_CHANGED = "SUBSCRIPTION_QUANTITY_CHANGED"
    SUBSCRIPTION_UNSUBSCRIBED = "SUBSCRIPTION_UNSUBSCRIBED"
    TERMINAL_REGISTERED = "TERMINAL_REGISTERED"
    TERMINAL_STATE_CHANGED = "TERMINAL_STATE_CHANGED"
