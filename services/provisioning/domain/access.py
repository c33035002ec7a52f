"""Who may see and change what: scopes, audiences and the one visibility rule.

Which customers a caller may see is one predicate over a customer's `tenant` and
`partner_id` (`Audience.predicate`): the transactional path evaluates it in Python, the
ORM queries render it as a clause, and the PostgreSQL fast path renders it into its SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.auth import Principal

from .predicates import Always, Eq, Or, Predicate

OPERATOR = "operator"
PARTNER = "partner"
READ = "provisioning.read"
WRITE = "provisioning.write"
ENTITLEMENTS = "provisioning.entitlements"
EVENTS = "provisioning.events"

READERS = (READ, WRITE, PARTNER, OPERATOR)
WRITERS = (WRITE, PARTNER, OPERATOR)


@dataclass(frozen=True)
class Audience:
    """Which customers a caller may see: everything, or those of some tenants/partners."""

    everything: bool
    tenant: str | None  # customers whose `tenant` is this
    partner: str | None  # customers whose managing partner is this

    def predicate(self, tenant: str = "tenant", partner: str = "partner_id") -> Predicate:
        """The rule over a customer's (or an event's) columns named `tenant`, `partner`.
        Always two shapes (everything, or tenant-or-partner with None never matching), so
        the fast path's SQL text does not vary with the caller."""
        if self.everything:
            return Always()
        return Or(Eq(tenant, self.tenant), Eq(partner, self.partner))


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
    """Whether `audience` sees a customer of this tenant and managing partner."""
    return audience.predicate().holds({"tenant": customer_tenant,
                                       "partner_id": customer_partner})


def sees_referral(principal: Principal, owner_id: str) -> bool:
    """A referral record is its owner partner's (and the operator's)."""
    return principal.has(OPERATOR) or (principal.has(PARTNER) and owner_id == principal.tenant)
