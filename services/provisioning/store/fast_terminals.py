"""Fast paths (`store/fast.py`) of registering a terminal and of moving it between
provisioned, active and suspended (PostgreSQL). A decommission changes the terminal count:
it always takes the transactional path.

The rules inside the SQL are the domain's predicates rendered (`domain/predicates.py`): who
may write to the customer (`Audience.predicate`), which subscriptions take a terminal
(`subscriptions.ADMITS_TERMINAL`) and which serve an activated one
(`subscriptions.SERVES_TERMINALS`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from shared.errors import DomainError

from ..domain import subscriptions as sub_rules
from ..domain import terminals as rules
from ..domain.access import Audience, admits, write_audience
from ..domain.events import EventType
from ..domain.names import check_etag, terminal_name
from ..domain.predicates import Always
from ..domain.records import Terminal
from . import rows
from .fast import ABORT, AUDIT_EVENT_CTES, CLAIM_CTE, FastCall, audit_event_ctes, render
from .rows import as_json, new_id

if TYPE_CHECKING:
    from . import Store


@functools.lru_cache(maxsize=4)
def _create_sql(everything: bool) -> tuple[str, dict[str, Any]]:
    """Count the terminal on its subscription (locked; the audience, the state and the
    limit checked on the current row), insert it unless its serial number is taken, audit,
    publish: one statement, no read before it (the answer is the request's). One text per
    shape of audience (everything, or tenant-or-partner)."""
    who, _ = render(Audience(everything, "", "").predicate(), "c", "aud")
    admitted, admit_params = render(sub_rules.ADMITS_TERMINAL, "s", "adm")
    sql = (
        f"WITH {CLAIM_CTE}, "
        "counted AS (UPDATE subscriptions s SET terminal_count = s.terminal_count + 1, "
        "version = s.version + 1 FROM customers c WHERE s.id = %(subscription)s "
        "AND s.customer_id = %(customer)s AND c.id = s.customer_id "
        f"AND {who} AND {admitted} "
        "AND EXISTS (SELECT FROM claim) RETURNING s.id, c.tenant, c.partner_id), "
        "changed AS (INSERT INTO terminals (id, customer_id, subscription_id, serial_number, "
        "latitude_deg, longitude_deg, altitude_m, state, create_time, update_time, version) "
        "SELECT %(terminal)s, %(customer)s, counted.id, %(serial)s, %(lat)s, %(lon)s, "
        "%(alt)s, %(state)s, %(now)s, %(now)s, 1 FROM counted "
        "ON CONFLICT (serial_number) DO NOTHING RETURNING id), "
        + audit_event_ctes("counted.tenant", "counted.partner_id", "changed, counted")
        + " " + ABORT.format(", (SELECT tenant FROM counted), "
                             "(SELECT partner_id FROM counted)"))
    return sql, admit_params


async def create(store: Store, call: FastCall, customer_id: str, subscription_id: str,
                 serial: str, location: tuple[float, float, float]) -> bytes | None:
    audience = write_audience(call.principal)
    after = Terminal(id=new_id(), customer_id=customer_id, subscription_id=subscription_id,
                     serial_number=serial, latitude_deg=location[0],
                     longitude_deg=location[1], altitude_m=location[2],
                     state=rules.REGISTERED, create_time=call.now, update_time=call.now,
                     version=1)
    answer = call.encode(after)
    sql, constants = _create_sql(audience.everything)
    params = call.key_params(answer)
    params.update(constants)
    params.update(render(audience.predicate(), "c", "aud")[1])  # the same text, this caller
    params.update(
        subscription=subscription_id, customer=customer_id, terminal=after.id, serial=serial,
        lat=location[0], lon=location[1], alt=location[2], state=str(rules.REGISTERED),
        resource=terminal_name(customer_id, after.id), action="terminal.create",
        before="", after=as_json(after.payload()),
        event_type=str(EventType.TERMINAL_REGISTERED))
    result = await store.fast_write(call, sql, params, answer)
    if isinstance(result, tuple):
        store.known_terminal(after, result[2], result[3])
        return answer
    return result


_TRANSITION_READ = (
    "SELECT k.fingerprint, k.response, t.id, t.customer_id, t.subscription_id, "
    "t.serial_number, t.latitude_deg, t.longitude_deg, t.altitude_m, t.state, "
    "t.create_time, t.update_time, t.version, c.tenant, c.partner_id FROM (SELECT 1) AS one "
    "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
    "AND k.request_id = %(k_request_id)s "
    "LEFT JOIN terminals t ON t.id = %(terminal)s AND t.customer_id = %(customer)s "
    "LEFT JOIN customers c ON c.id = t.customer_id")
_TERMINAL_FIELDS = ("id", "customer_id", "subscription_id", "serial_number", "latitude_deg",
                    "longitude_deg", "altitude_m", "state", "create_time", "update_time",
                    "version")


@functools.lru_cache(maxsize=4)
def _transition_sql(activating: bool) -> tuple[str, dict[str, Any]]:
    """Lock order as in the transactional path: key, subscription (shared: unchanged until
    the end; for an activation it must serve terminals), then the terminal, changed only if
    it is still the version and state that was read."""
    serves, params = render(sub_rules.SERVES_TERMINALS if activating else Always(), "s",
                            "srv")
    sql = (
        f"WITH {CLAIM_CTE}, "
        "sub AS (SELECT s.id FROM subscriptions s WHERE s.id = %(subscription)s "
        f"AND {serves} AND EXISTS (SELECT FROM claim) FOR SHARE), "
        "changed AS (UPDATE terminals SET state = %(state)s, version = %(new_version)s, "
        "update_time = %(now)s WHERE id = %(terminal)s AND version = %(version)s "
        "AND state = %(old_state)s AND EXISTS (SELECT FROM sub) RETURNING id), "
        f"{AUDIT_EVENT_CTES} {ABORT.format('')}")
    return sql, params


async def transition(store: Store, call: FastCall, customer_id: str, terminal_id: str,
                     action: str, etag: str) -> bytes | None:
    """Provision, activate, suspend (a decommission changes the count: not here)."""
    if action == "decommission":
        return None
    params: dict[str, Any] = {"k_tenant": call.principal.tenant,
                              "k_request_id": call.request_id, "terminal": terminal_id,
                              "customer": customer_id}
    known = store.known_terminals.get(terminal_id)
    before: Terminal
    if known is not None and known[0].customer_id == customer_id:
        # As this replica last wrote it; the write below checks it still is.
        before, c_tenant, c_partner = known
    else:
        assert store.fast_reads is not None
        row = await store.fast_reads.fetchone(_TRANSITION_READ, params)
        key_print, response = row[:2]
        if key_print is not None:
            return call.replay(key_print, response)
        if row[2] is None:
            return None
        before = rows.terminal(dict(zip(_TERMINAL_FIELDS, row[2:13], strict=True)))
        c_tenant, c_partner = row[13:15]
    if not admits(write_audience(call.principal), c_tenant, c_partner):
        return None
    name = terminal_name(customer_id, terminal_id)
    try:
        check_etag(etag, before.version, name)
        new_state = rules.terminal_next(before.state, action, name)
    except DomainError:
        return None
    after = before.changed(state=new_state, version=before.version + 1, update_time=call.now)
    answer = call.encode(after)
    sql, constants = _transition_sql(action == "activate")
    params.update(call.key_params(answer))
    params.update(constants)
    params.update(
        subscription=before.subscription_id, state=str(new_state), new_version=after.version,
        version=before.version, old_state=before.state, resource=name,
        action=f"terminal.{action}", before=as_json(before.payload()),
        after=as_json(after.payload()), event_type=str(EventType.TERMINAL_STATE_CHANGED),
        c_tenant=c_tenant, c_partner=c_partner)
    result = await store.fast_write(call, sql, params, answer)
    if isinstance(result, tuple):
        store.known_terminal(after, c_tenant, c_partner)
        return answer
    store.known_terminals.pop(terminal_id, None)  # declined: read it next time
    return result
