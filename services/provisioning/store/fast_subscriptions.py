"""Fast paths (`store/fast.py`) of buying and activating a subscription (PostgreSQL)."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from shared.errors import DomainError

from ..domain import subscriptions as rules
from ..domain.access import admits, write_audience
from ..domain.events import EventType
from ..domain.names import subscription_name
from ..domain.records import Subscription
from . import rows
from .fast import ABORT, AUDIT_EVENT_CTES, CLAIM_CTE, FastCall, naive
from .rows import TERMS, as_json, new_id
from .tables import SubscriptionRow

if TYPE_CHECKING:
    from . import Store

_CREATE_READ = (
    "SELECT k.fingerprint, k.response, c.tenant, c.partner_id, p.revision, "
    + ", ".join(f"p.{name}" for name in TERMS) + " FROM (SELECT 1) AS one "
    "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
    "AND k.request_id = %(k_request_id)s "
    "LEFT JOIN customers c ON c.id = %(customer)s "
    "LEFT JOIN plans p ON p.id = %(plan)s")
_CREATE = (
    f"WITH {CLAIM_CTE}, "
    "changed AS (INSERT INTO subscriptions (id, customer_id, display_name, plan_id, "
    "plan_revision, " + ", ".join(TERMS) + ", quantity, terminal_count, state, "
    "activation_deadline, grace_end_time, state_reason, create_time, update_time, version)"
    " SELECT %(subscription)s, %(customer)s, %(display_name)s, %(plan)s, %(revision)s, "
    + ", ".join(f"%({name})s" for name in TERMS) + ", %(quantity)s, 0, %(state)s, "
    "%(deadline)s, NULL, '', %(now)s, %(now)s, 1 WHERE EXISTS (SELECT FROM claim) "
    "RETURNING id), "
    f"{AUDIT_EVENT_CTES} {ABORT.format('')}")


async def create(store: Store, call: FastCall, customer_id: str, plan_id: str, quantity: int,
                 display_name: str) -> bytes | None:
    params: dict[str, Any] = {"k_tenant": call.principal.tenant,
                              "k_request_id": call.request_id, "customer": customer_id,
                              "plan": plan_id}
    assert store.fast_reads is not None
    row = await store.fast_reads.fetchone(_CREATE_READ, params)
    key_print, response, c_tenant, c_partner, revision = row[:5]
    if key_print is not None:
        return call.replay(key_print, response)
    if (c_tenant is None or revision is None
            or not admits(write_audience(call.principal), c_tenant, c_partner)):
        return None
    stored = dict(zip(TERMS, row[5:], strict=True))
    terms = rows.terms_of(stored)
    try:
        rules.check_purchase(terms, quantity)
    except DomainError:
        return None
    deadline = call.now + rules.ACTIVATION_WINDOW
    sub = Subscription(
        id=new_id(), customer_id=customer_id, display_name=display_name, plan_id=plan_id,
        plan_revision=revision, terms=terms, quantity=quantity, terminal_count=0,
        state=rules.PENDING, activation_deadline=deadline, grace_end_time=None,
        state_reason="", create_time=call.now, update_time=call.now, version=1)
    answer = call.encode(sub)
    params.update(call.key_params(answer))
    params.update(stored)
    params.update(
        subscription=sub.id, display_name=display_name, revision=revision,
        quantity=quantity, state=str(rules.PENDING), deadline=naive(deadline),
        resource=subscription_name(customer_id, sub.id), action="subscription.create",
        before="", after=as_json(sub.payload()), event_type=str(EventType.SUBSCRIPTION_CREATED),
        c_tenant=c_tenant, c_partner=c_partner)
    result = await store.fast_write(call, _CREATE, params, answer)
    return answer if isinstance(result, tuple) else result


_COLUMNS = tuple(c.key for c in SubscriptionRow.__table__.columns)
_ACTIVATE_READ = (
    "SELECT k.fingerprint, k.response, c.tenant, c.partner_id, "
    + ", ".join(f"s.{name}" for name in _COLUMNS) + " FROM (SELECT 1) AS one "
    "LEFT JOIN idempotency_keys k ON k.tenant = %(k_tenant)s "
    "AND k.request_id = %(k_request_id)s "
    "LEFT JOIN subscriptions s ON s.id = %(subscription)s AND s.customer_id = %(customer)s "
    "LEFT JOIN customers c ON c.id = s.customer_id")
#: Changed only if it is still the version and state that was read (every change of a
#: subscription, its terminal count included, increments its version).
_ACTIVATE = (
    f"WITH {CLAIM_CTE}, "
    "changed AS (UPDATE subscriptions SET state = %(state)s, state_reason = '', "
    "version = %(new_version)s, update_time = %(now)s WHERE id = %(subscription)s "
    "AND version = %(version)s AND state = %(old_state)s "
    "AND EXISTS (SELECT FROM claim) RETURNING id), "
    f"{AUDIT_EVENT_CTES} {ABORT.format('')}")


async def activate(store: Store, call: FastCall, customer_id: str, subscription_id: str,
                   plan_id: str, quantity: int) -> bytes | None:
    params: dict[str, Any] = {"k_tenant": call.principal.tenant,
                              "k_request_id": call.request_id, "customer": customer_id,
                              "subscription": subscription_id}
    assert store.fast_reads is not None
    row = await store.fast_reads.fetchone(_ACTIVATE_READ, params)
    key_print, response, c_tenant, c_partner = row[:4]
    if key_print is not None:
        return call.replay(key_print, response)
    if c_tenant is None or not admits(write_audience(call.principal), c_tenant, c_partner):
        return None
    before = rows.subscription(types.SimpleNamespace(
        **dict(zip(_COLUMNS, row[4:], strict=True))))
    name = subscription_name(customer_id, subscription_id)
    try:
        new_state = rules.activation(
            before.state, before.activation_deadline, plan_id, quantity,
            bought_plan=before.plan_id, bought_quantity=before.quantity, now=call.now,
            resource=name)
    except DomainError:
        return None  # the transactional path reports it
    after = before.changed(state=new_state, state_reason="", version=before.version + 1,
                           update_time=call.now)
    answer = call.encode(after)
    params.update(call.key_params(answer))
    params.update(
        state=str(new_state), new_version=after.version, version=before.version,
        old_state=before.state, resource=name, action="subscription.activate",
        before=as_json(before.payload()), after=as_json(after.payload()),
        event_type=str(EventType.SUBSCRIPTION_ACTIVATED), c_tenant=c_tenant,
        c_partner=c_partner)
    result = await store.fast_write(call, _ACTIVATE, params, answer)
    return answer if isinstance(result, tuple) else result

