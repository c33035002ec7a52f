"""Pure tests of the provisioning domain: state machines, validation, entitlement decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.provisioning import domain
from services.provisioning.domain import PlanTerms, validation
from shared.errors import FailedPrecondition, InvalidArgument

TERMS = PlanTerms(100.0, "ENTERPRISE", 1, 10, "USD", 500, 0, ("westeurope",))


def test_subscription_lifecycle_follows_saas_fulfillment():
    s = domain.subscription_next(domain.PENDING, "activate", "s")
    assert s == domain.SUBSCRIBED
    assert domain.subscription_next(s, "suspend", "s") == domain.SUSPENDED
    assert domain.subscription_next(domain.SUSPENDED, "reinstate", "s") == domain.SUBSCRIBED
    assert domain.subscription_next(domain.SUSPENDED, "cancel", "s") == domain.UNSUBSCRIBED
    with pytest.raises(FailedPrecondition) as caught:
        domain.subscription_next(domain.UNSUBSCRIBED, "reinstate", "subs/1")
    assert caught.value.metadata["current_state"] == domain.UNSUBSCRIBED
    assert "UNSUBSCRIBED" in caught.value.message


@given(st.sampled_from(domain.SUBSCRIPTION_STATES), st.sampled_from(sorted(domain.SUBSCRIPTION_ACTIONS)))
def test_subscription_transitions_stay_on_the_allowed_edges(state, action):
    try:
        new = domain.subscription_next(state, action, "s")
    except FailedPrecondition:
        return
    assert (state, new) in domain.SUBSCRIPTION_EDGES
    assert state != domain.UNSUBSCRIBED  # final


@given(st.sampled_from(domain.TERMINAL_STATES), st.sampled_from(sorted(domain.TERMINAL_ACTIONS)))
def test_terminal_transitions_stay_on_the_allowed_edges(state, action):
    try:
        new = domain.terminal_next(state, action, "t")
    except FailedPrecondition:
        return
    assert (state, new) in domain.TERMINAL_EDGES
    assert state != domain.DECOMMISSIONED


PAIRS = [(s, sub) for s, subs in domain.SUBSTATUSES.items() for sub in subs]


@given(st.sampled_from([domain.OUTBOUND, domain.INBOUND]), st.sampled_from(PAIRS),
       st.sampled_from(PAIRS))
def test_referral_moves_are_the_allowed_ones(direction, current, wanted):
    try:
        new = domain.referral_next(direction, current, wanted, "r")
    except FailedPrecondition:
        assert wanted not in domain.REFERRAL_MOVES.get((direction, current), ())
        return
    assert (current, new) in domain.REFERRAL_EDGES
    assert current[0] != domain.CLOSED
    assert not (direction == domain.OUTBOUND and new == (domain.ACTIVE_STATUS, domain.ACCEPTED))


def test_referral_substatus_must_belong_to_its_status():
    with pytest.raises(InvalidArgument) as caught:
        domain.referral_next(domain.INBOUND, (domain.NEW, domain.RECEIVED),
                             (domain.NEW, domain.WON), "r")
    assert caught.value.violations[0].field == "referral.substatus"


@pytest.mark.parametrize("value,ok", [
    ("a@b.co", True), ("first.last+tag@sub.example.org", True), ("no-at.example.com", False),
    ("a@@b.com", False), ("a@b", False), ("a..b@c.com", False), ("", False),
    ("x" * 65 + "@b.com", False)])
def test_emails(value, ok):
    assert (validation.email(value) is None) is ok


def test_countries_and_currencies():
    assert validation.country("US") is None and validation.country("DE") is None
    assert validation.country("XX") and validation.country("us") and validation.country("USA")
    assert validation.currency("EUR") is None and validation.currency("JPY") is None
    assert validation.currency("XYZ") and validation.currency("usd")
    assert validation.money("USD", -1, 0) == [("units", "must not be negative")]
    assert validation.money("USD", 1, 2_000_000_000)[0][0] == "nanos"


def test_plan_terms_bounds_and_problems():
    assert TERMS.problems() == []
    assert TERMS.quantity_problem(11) and TERMS.quantity_problem(0)
    assert TERMS.quantity_problem(10) is None
    bad = PlanTerms(0, "", 5, 2, "usd", 0, 0, ("West Europe", "eastus", "eastus"))
    fields = {f for f, _ in bad.problems("plan.terms")}
    assert fields == {"plan.terms.bandwidth_mbps", "plan.terms.priority_class",
                      "plan.terms.max_quantity", "plan.terms.unit_price.currency_code",
                      "plan.terms.regions[0]", "plan.terms.regions"}


def test_entitlement_decisions():
    def decide(t=domain.ACTIVE, s=domain.SUBSCRIBED, mbps=50.0, region="westeurope"):
        return domain.decide_entitlement(terminal_state=t, subscription_state=s, terms=TERMS,
                                         bandwidth_mbps=mbps, region=region)

    assert decide().allowed and decide().priority_class == "ENTERPRISE"
    assert decide(s=domain.SUSPENDED).reason == "SUBSCRIPTION_NOT_ACTIVE"
    assert decide(t=domain.PROVISIONED).reason == "TERMINAL_NOT_ACTIVE"
    assert decide(mbps=101).reason == "BANDWIDTH_EXCEEDS_PLAN"
    assert decide(region="eastus").reason == "REGION_NOT_IN_PLAN"
    missing = domain.decide_entitlement(terminal_state=None, subscription_state=None, terms=None,
                                        bandwidth_mbps=1, region="x")
    assert missing.reason == "TERMINAL_NOT_FOUND" and not missing.allowed
