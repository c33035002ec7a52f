"""Records (`domain/records.py`) to protos and request messages to domain values."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.rpc import status_pb2
from google.type import money_pb2
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.errors import Violations
from shared.wire import datetime_to_timestamp, optional_timestamp

from ..domain import validation
from ..domain.entitlements import Entitlement
from ..domain.names import etag_of
from ..domain.plans import PlanTerms
from ..domain.records import (
    AuditRecord,
    Customer,
    Event,
    Operation,
    Partner,
    Plan,
    Referral,
    Subscription,
    Terminal,
)
from .names import encode_cursor


def money(currency: str, units: int, nanos: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def enum_name(enum_type: Any, value: int, prefix: str) -> str:
    """The domain name of a proto enum value (`STATE_SUBSCRIBED` -> `SUBSCRIBED`)."""
    return enum_type.Name(value).removeprefix(prefix) if value else ""


# --- records -> protos ------------------------------------------------------------------

def partner_pb(d: Partner) -> res.Partner:
    return res.Partner(name=f"partners/{d.id}", display_name=d.display_name,
                       contact_email=d.contact_email,
                       create_time=datetime_to_timestamp(d.create_time))


def referral_pb(d: Referral) -> res.Referral:
    return res.Referral(
        name=f"referrals/{d.id}", engagement_id=d.engagement_id,
        owner=f"partners/{d.owner_id}", counterparty=f"partners/{d.counterparty_id}",
        direction=res.Referral.Direction.Value("DIRECTION_" + d.direction),
        display_name=d.display_name,
        status=res.Referral.Status.Value("STATUS_" + d.status),
        substatus=res.Referral.Substatus.Value("SUBSTATUS_" + d.substatus),
        deal_value=money(d.deal_currency, d.deal_units, d.deal_nanos),
        customer_profile=res.CustomerProfile(
            organization=d.organization, country=d.country,
            contact_email=d.contact_email, sector=res.Sector.Value("SECTOR_" + d.sector)),
        consent_share_contact=d.consent_share_contact, consent_contact=d.consent_contact,
        notes=d.notes, expire_time=optional_timestamp(d.expire_time),
        create_time=datetime_to_timestamp(d.create_time),
        update_time=datetime_to_timestamp(d.update_time), etag=etag_of(d.version))


def customer_pb(d: Customer) -> res.Customer:
    return res.Customer(
        name=f"customers/{d.id}", display_name=d.display_name,
        sector=res.Sector.Value("SECTOR_" + d.sector), country=d.country,
        contact_email=d.contact_email, azure_tenant_id=d.azure_tenant_id,
        azure_subscription_id=d.azure_subscription_id, tenant=d.tenant,
        source_partner=f"partners/{d.partner_id}" if d.partner_id else "",
        referral=f"referrals/{d.referral_id}" if d.referral_id else "",
        create_time=optional_timestamp(d.create_time), etag=etag_of(d.version))


def terms_pb(t: PlanTerms) -> res.PlanTerms:
    return res.PlanTerms(
        bandwidth_mbps=t.bandwidth_mbps,
        priority_class=res.PriorityClass.Value("PRIORITY_CLASS_" + t.priority_class),
        min_quantity=t.min_quantity, max_quantity=t.max_quantity,
        unit_price=money(t.price_currency, t.price_units, t.price_nanos),
        regions=t.regions)


def plan_pb(d: Plan) -> res.Plan:
    return res.Plan(name=f"plans/{d.id}", display_name=d.display_name,
                    terms=terms_pb(d.terms), revision=d.revision,
                    create_time=datetime_to_timestamp(d.create_time),
                    update_time=datetime_to_timestamp(d.update_time), etag=etag_of(d.version))


def subscription_pb(d: Subscription) -> res.Subscription:
    return res.Subscription(
        name=f"customers/{d.customer_id}/subscriptions/{d.id}",
        display_name=d.display_name, plan=f"plans/{d.plan_id}",
        plan_revision=d.plan_revision, terms=terms_pb(d.terms), quantity=d.quantity,
        state=res.Subscription.State.Value("STATE_" + d.state),
        activation_deadline=optional_timestamp(d.activation_deadline),
        grace_end_time=optional_timestamp(d.grace_end_time), state_reason=d.state_reason,
        terminal_count=d.terminal_count, create_time=optional_timestamp(d.create_time),
        update_time=optional_timestamp(d.update_time), etag=etag_of(d.version))


def operation_pb(d: Operation) -> res.SubscriptionOperation:
    op = res.SubscriptionOperation(
        name=(f"customers/{d.customer_id}/subscriptions/{d.subscription_id}"
              f"/operations/{d.id}"),
        kind=res.SubscriptionOperation.Kind.Value("KIND_" + d.kind),
        state=res.SubscriptionOperation.State.Value("STATE_" + d.state),
        done=d.state != "RUNNING", plan=f"plans/{d.plan_id}" if d.plan_id else "",
        quantity=d.quantity, requested_by=d.requested_by,
        create_time=optional_timestamp(d.create_time), end_time=optional_timestamp(d.end_time))
    if d.state == "FAILED":
        op.error.CopyFrom(status_pb2.Status(code=d.error_code, message=d.error_message))
    return op


def terminal_pb(d: Terminal) -> res.Terminal:
    return res.Terminal(
        name=f"customers/{d.customer_id}/terminals/{d.id}",
        serial_number=d.serial_number,
        subscription=f"customers/{d.customer_id}/subscriptions/{d.subscription_id}",
        location=common_pb2.GeodeticPoint(latitude_deg=d.latitude_deg,
                                          longitude_deg=d.longitude_deg,
                                          altitude_m=d.altitude_m),
        state=res.Terminal.State.Value("STATE_" + d.state),
        create_time=datetime_to_timestamp(d.create_time),
        update_time=datetime_to_timestamp(d.update_time), etag=etag_of(d.version))


def struct(data: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if data is None:
        return None
    out = struct_pb2.Struct()
    json_format.ParseDict(data, out)
    return out


def audit_pb(d: AuditRecord) -> res.AuditRecord:
    return res.AuditRecord(
        name=f"{d.resource}/auditRecords/{d.id}", resource=d.resource,
        action=d.action, actor=d.actor, actor_tenant=d.actor_tenant,
        request_id=d.request_id, create_time=optional_timestamp(d.create_time),
        before=struct(d.before), after=struct(d.after))


def event_pb(d: Event) -> res.Event:
    event = res.Event(cursor=encode_cursor(d.position),
                      type=res.Event.Type.Value("TYPE_" + d.type), resource=d.name,
                      customer=f"customers/{d.customer_id}",
                      create_time=datetime_to_timestamp(d.create_time))
    if isinstance(d.resource, Subscription):
        event.subscription.CopyFrom(subscription_pb(d.resource))
    else:
        event.terminal.CopyFrom(terminal_pb(d.resource))
    return event


# --- request -> domain values -----------------------------------------------------------

def check_money(check: Violations, value: money_pb2.Money, path: str, *,
                allow_zero: bool = True) -> None:
    for field, description in validation.money(value.currency_code, value.units, value.nanos,
                                                allow_zero=allow_zero):
        check.add(f"{path}.{field}", description)


def terms_from(message: res.PlanTerms, check: Violations, path: str) -> PlanTerms:
    terms = PlanTerms(
        bandwidth_mbps=message.bandwidth_mbps if math.isfinite(message.bandwidth_mbps) else -1.0,
        priority_class=enum_name(res.PriorityClass, message.priority_class, "PRIORITY_CLASS_"),
        min_quantity=message.min_quantity, max_quantity=message.max_quantity,
        price_currency=message.unit_price.currency_code, price_units=message.unit_price.units,
        price_nanos=message.unit_price.nanos, regions=tuple(message.regions))
    check.extend(terms.problems(path))
    return terms


def entitlement_pb(answer: Entitlement) -> pb.CheckEntitlementResponse:
    location = answer.terminal_location
    return pb.CheckEntitlementResponse(
        allowed=answer.allowed,
        reason=pb.EntitlementReason.Value("ENTITLEMENT_REASON_" + answer.reason),
        message=answer.message, max_bandwidth_mbps=answer.max_bandwidth_mbps,
        priority_class=(res.PriorityClass.Value("PRIORITY_CLASS_" + answer.priority_class)
                        if answer.priority_class else 0),
        subscription=answer.subscription, customer_tenant=answer.customer_tenant,
        terminal_location=(common_pb2.GeodeticPoint(latitude_deg=location[0],
                                                    longitude_deg=location[1],
                                                    altitude_m=location[2])
                           if location else None))
