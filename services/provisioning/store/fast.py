"""The PostgreSQL fast path: a hot mutation as one autocommit statement.

The change is planned from one autocommit read (which also looks up the idempotency key;
none for a registration, nor for a transition of a terminal this replica wrote last) and
written by ONE autocommit statement of data-modifying CTEs that claim the key (INSERT ...
ON CONFLICT DO NOTHING, storing the answer with it), then lock and change the rows only if
the key was claimed and only if they are still as read (their version, their state, the
domain's predicates rendered into the SQL), then insert the audit record and the outbox
event from the changed row. Row locks are held for that one statement only, never while
the event loop gets round to a next statement or a COMMIT. Outcomes:

- key claimed and change made: committed, the answer is returned;
- key not claimed (another call with this key committed first, or a concurrent duplicate
  committed while this one waited on the key): nothing was written; the stored answer is
  replayed if it is for the same request, else the transactional path reports
  REQUEST_ID_REUSED;
- key claimed but the rows changed since the read (or a limit was reached): the statement
  divides by zero on purpose (`ABORT`), so it rolls back as a whole, and the transactional
  path runs the call again against the current rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..domain.predicates import Predicate, SqlText


@dataclass
class FastCall:
    """One mutation offered to the fast path."""

    principal: Any
    method: str
    request_id: str
    fingerprint: str
    now: datetime
    encode: Callable[[Any], bytes]
    events: int = 0

    def key_params(self, answer: bytes) -> dict[str, Any]:
        return {"k_tenant": self.principal.tenant, "k_request_id": self.request_id,
                "k_method": self.method, "k_fingerprint": self.fingerprint,
                "k_response": answer, "now": naive(self.now),
                "actor": self.principal.subject, "actor_tenant": self.principal.tenant}

    def replay(self, key_print: str | None, response: bytes | None) -> bytes | None:
        """The stored answer when it is this request's (else None: the slow path decides)."""
        if key_print == self.fingerprint and response is not None:
            return bytes(response)
        return None


def naive(value: datetime) -> datetime:
    """A timestamp as the columns hold it (naive UTC; see `shared.columns.UTCDateTime`)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def render(predicate: Predicate, alias: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """A domain predicate as SQL over table alias `alias`, with its parameters."""
    out = SqlText(prefix)
    return predicate.sql(alias, out), out.params


#: The CTE that claims the idempotency key and stores the answer with it.
CLAIM_CTE = (
    "claim AS (INSERT INTO idempotency_keys (tenant, request_id, method, fingerprint, "
    "response, create_time) VALUES (%(k_tenant)s, %(k_request_id)s, %(k_method)s, "
    "%(k_fingerprint)s, %(k_response)s, %(now)s) ON CONFLICT DO NOTHING RETURNING 1)")


def audit_event_ctes(tenant: str = "%(c_tenant)s", partner: str = "%(c_partner)s",
                     source: str = "changed") -> str:
    """The audit record and the event of a change, one each per row of the CTE `changed`
    (the event after every row lock of the change: its `seq` orders the resource's changes).
    """
    return (
        "audit AS (INSERT INTO audit_records (resource, action, actor, actor_tenant, "
        "request_id, before, after, create_time) SELECT %(resource)s, %(action)s, %(actor)s, "
        "%(actor_tenant)s, %(k_request_id)s, %(before)s, %(after)s, %(now)s FROM changed), "
        "event AS (INSERT INTO events (type, resource, customer_id, tenant, partner_id, "
        f"payload, create_time) SELECT %(event_type)s, %(resource)s, %(customer)s, {tenant}, "
        f"{partner}, %(after)s, %(now)s FROM {source})")


AUDIT_EVENT_CTES = audit_event_ctes()
#: The statement's result: whether the key was claimed; a claimed key without its change
#: divides by zero, which rolls the whole statement back.
ABORT = ("SELECT n.claimed, 1 / (1 - n.claimed + n.changed){} FROM (SELECT "
         "(SELECT count(*) FROM claim) AS claimed, (SELECT count(*) FROM changed) AS changed"
         ") AS n")

#: Looks the key up again after a statement that did not claim it.
KEY_SQL = ("SELECT fingerprint, response FROM idempotency_keys "
           "WHERE tenant = %(k_tenant)s AND request_id = %(k_request_id)s")
