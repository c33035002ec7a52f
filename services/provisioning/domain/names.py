"""Resource names (AIP-122) and etags, as the domain writes them into errors, audit
records and events. Parsing names out of requests is the API's (`api/names.py`)."""

from __future__ import annotations

from shared.errors import Aborted


def partner_name(partner_id: str) -> str:
    return f"partners/{partner_id}"


def referral_name(referral_id: str) -> str:
    return f"referrals/{referral_id}"


def plan_name(plan_id: str) -> str:
    return f"plans/{plan_id}"


def customer_name(customer_id: str) -> str:
    return f"customers/{customer_id}"


def subscription_name(customer_id: str, subscription_id: str) -> str:
    return f"customers/{customer_id}/subscriptions/{subscription_id}"


def operation_name(customer_id: str, subscription_id: str, operation_id: str) -> str:
    return f"{subscription_name(customer_id, subscription_id)}/operations/{operation_id}"


def terminal_name(customer_id: str, terminal_id: str) -> str:
    return f"customers/{customer_id}/terminals/{terminal_id}"


def etag_of(version: int) -> str:
    return f'W/"{version}"'


def check_etag(etag: str, version: int, resource: str) -> None:
    """ABORTED `STALE_ETAG` unless `etag` is empty or the current version's."""
    if etag and etag != etag_of(version):
        raise Aborted(f"{resource} changed since it was read (etag {etag} is stale, current "
                      f"{etag_of(version)}); read it again and retry",
                      reason="STALE_ETAG", metadata={"resource": resource,
                                                     "current_etag": etag_of(version)})
