"""Entitlement decisions: may this terminal of this customer carry this bandwidth into
this region, and why not."""

from __future__ import annotations

from dataclasses import dataclass

from .plans import PlanTerms
from .subscriptions import SUBSCRIBED
from .terminals import ACTIVE


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

    def answer(allowed: bool, reason: str, message: str) -> Entitlement:
        return Entitlement(allowed, reason, message, max_bandwidth_mbps=terms.bandwidth_mbps,
                           priority_class=str(terms.priority_class), subscription=subscription)

    if subscription_state != SUBSCRIBED:
        return answer(False, "SUBSCRIPTION_NOT_ACTIVE", f"the subscription is {subscription_state}")
    if terminal_state != ACTIVE:
        return answer(False, "TERMINAL_NOT_ACTIVE", f"the terminal is {terminal_state}")
    if bandwidth_mbps > terms.bandwidth_mbps:
        return answer(False, "BANDWIDTH_EXCEEDS_PLAN",
                      f"{bandwidth_mbps:g} Mbit/s exceeds the plan's "
                      f"{terms.bandwidth_mbps:g} Mbit/s")
    if not terms.reaches(region):
        return answer(False, "REGION_NOT_IN_PLAN", f"the plan does not reach region {region}")
    return answer(True, "ENTITLED", "entitled")
