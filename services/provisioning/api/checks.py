"""Checks of request fields that file violations under the field's path."""

from __future__ import annotations

import math

from skybridge.provisioning.v1 import provisioning_pb2 as pb

from shared.errors import Violations
from shared.validation import Rules

from ..domain import validation
from .names import parse

#: Checks one BatchCheckEntitlements call may carry.
MAX_BATCH_CHECKS = 500
#: The ErrorInfo domain of this service's errors (as the server interceptor names it).
DOMAIN = "provisioning.skybridge"

#: The contract checks beyond the descriptors (`shared.validation`): a batch check that is
#: wrong fails alone, so the contract checks of each item run in BatchCheckEntitlements.
REQUEST_RULES = Rules(
    max_items={"skybridge.provisioning.v1.BatchCheckEntitlementsRequest.checks":
               MAX_BATCH_CHECKS},
    per_item=frozenset({"skybridge.provisioning.v1.BatchCheckEntitlementsRequest.checks"}),
)


def need_text(check: Violations, value: str, path: str, maximum: int = validation.MAX_NAME,
              *, required: bool = True) -> None:
    bad = validation.text(value, maximum, required=required)
    if bad:
        check.add(path, bad)


def need(check: Violations, problem: str | None, path: str) -> None:
    if problem:
        check.add(path, problem)


def entitlement_args(request: pb.CheckEntitlementRequest, check: Violations,
                     prefix: str = "") -> tuple[str, str]:
    """(customer id, terminal id) of a check; violations (fields named `prefix` + field)
    go to `check`."""
    customer = parse(request.customer, "customer", prefix + "customer", check)
    terminal = parse(request.terminal, "terminal", prefix + "terminal", check)
    if customer and terminal and customer[0] != terminal[0]:
        check.add(prefix + "terminal", f"must be a terminal of {request.customer}")
    check.check(math.isfinite(request.bandwidth_mbps) and request.bandwidth_mbps > 0,
                prefix + "bandwidth_mbps", "must be a finite number above 0")
    need(check, validation.region(request.target_region), prefix + "target_region")
    return (customer[0] if customer else "", terminal[1] if terminal else "")
