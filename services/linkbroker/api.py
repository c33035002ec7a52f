"""The LinkBrokerService servicer: proto <-> broker, validation, entitlement, tenancy.

Scopes

| scope | who | may |
|---|---|---|
| `links.read` | a customer's users and apps | list regions and gateways, estimate paths, read the links of the token's tenant, watch them |
| `links.write` | a customer's admins and apps | the above, plus request and release links for the tenant's customers |
| `linkbroker.operator` | network operations | everything, for every tenant; add, drain and restore gateways |

A link or customer of another tenant answers NOT_FOUND, exactly like one that does not
exist. Mutating calls need a `request_id` (at most 128 characters, kept 48 hours). A key
belongs to the caller's tenant (`shared.idempotency`): an operator's RequestLink for a
customer is keyed under the operator's tenant, not the customer's, and the customer's own
calls never see the operator's keys. A retry, sequential or concurrent, makes no second
effect: RequestLink, ReleaseLink and CreateGateway answer the link or gateway the first
call made as it is now; DrainGateway and RestoreGateway answer the first answer (its
re-planned and degraded counts included). The same key with a different request is
INVALID_ARGUMENT (REQUEST_ID_REUSED).

Errors: bad fields are INVALID_ARGUMENT naming each field; unknown customer or terminal is
NOT_FOUND (field named); a subscription or terminal not active, a bandwidth above the plan or
a region outside it is FAILED_PRECONDITION with the provisioning reason; no satellite above
the mask in some slot is FAILED_PRECONDITION (NO_COVERAGE, slot named); a full resource is
RESOURCE_EXHAUSTED (CAPACITY_EXHAUSTED) with the slot, its start time and the resource in
the error metadata. Nothing is held by a refused request.
"""

from __future__ import annotations

import math
import re
import secrets
from datetime import datetime

import grpc
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb
from skybridge.linkbroker.v1 import linkbroker_pb2_grpc
from skybridge.provisioning.v1 import provisioning_pb2 as prov
from skybridge.provisioning.v1 import resources_pb2 as prov_res

from services.linkbroker.api_exports import ExportRpcs
from services.linkbroker.broker import LinkBroker, NoCoverage
from services.linkbroker.convert import (
    finite_or_zero,
    gateway_pb,
    link_pb,
    link_state,
    slot_pb,
    slot_ts,
)
from services.linkbroker.fields import (
    links_after,
    location_field,
    require_request_id,
    window_field,
)
from services.linkbroker.ledger import Oversubscribed
from services.linkbroker.plan import LinkPlan, SlotPath
from services.linkbroker.records import (
    LIVE_STATES,
    EventKind,
    GatewayRecord,
    GatewayStatus,
    Lease,
    LinkState,
    NewGateway,
    NewLease,
    Priority,
)
from services.linkbroker.regions import UnknownRegionError, normalize_region_name
from services.linkbroker.scopes import OPERATOR, READ, WRITE
from services.linkbroker.slots import slot_start
from services.linkbroker.store import fingerprint
from shared.auth import current_principal, requires
from shared.clients.entitlements import EntitlementChecker
from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Violations,
)
from shared.idempotency import Key, key_tenant
from shared.paging import decode_token, encode_token, page_size
from shared.wakeup import woken
from shared.wire import datetime_to_timestamp

_ID = re.compile(r"^[a-z][a-z0-9-]{2,39}$")
_CUSTOMER = re.compile(r"^customers/([a-z0-9][a-z0-9-]{0,62})$")
_TERMINAL = re.compile(r"^customers/([a-z0-9][a-z0-9-]{0,62})/terminals/([a-z0-9][a-z0-9-]{0,62})$")
_LINK = re.compile(r"^links/([0-9a-f]{32})$")
_GATEWAY = re.compile(r"^gateways/([a-z][a-z0-9-]{2,39})$")
_PRIORITY = {prov_res.PRIORITY_CLASS_GOVERNMENT_PRIORITY: Priority.GOVERNMENT,
             prov_res.PRIORITY_CLASS_ENTERPRISE: Priority.ENTERPRISE,
             prov_res.PRIORITY_CLASS_BEST_EFFORT: Priority.BEST_EFFORT}
_FINAL_STATES = {LinkState.PREEMPTED, LinkState.SUSPENDED, LinkState.RELEASED,
                 LinkState.EXPIRED}


class LinkBrokerServicer(ExportRpcs, linkbroker_pb2_grpc.LinkBrokerServiceServicer):
    def __init__(self, broker: LinkBroker, entitlements: EntitlementChecker):
        self.broker = broker
        self.store = broker.store
        #: provisioning's entitlement checks; concurrent requests' checks leave together
        self.entitlements = entitlements

    # --- validation helpers -------------------------------------------------------------

    def _region(self, value: str, path: str, check: Violations) -> str | None:
        """The programmatic name of the region `value` names (`regions/westeurope`, or a
        display form such as `West Europe`), or None with a violation at `path`."""
        if not value:
            check.add(path, "is required")
            return None
        try:
            name = normalize_region_name(value.removeprefix("regions/"))
        except UnknownRegionError:
            check.add(path, f"{value[:80]!r} is not an Azure region name such as "
                            "'regions/westeurope' (see ListRegions)")
            return None
        if name not in self.broker.constellation.regions:
            check.add(path, f"{value[:80]!r} is not a known Azure region (see ListRegions)")
            return None
        return name

    def _visible_tenant(self) -> str | None:
        principal = current_principal()
        return None if principal.has(OPERATOR) else principal.tenant

    async def _link_row(self, name: str, path: str = "name") -> Lease:
        match = _LINK.match(name or "")
        if not match:
            raise InvalidArgument(f"{path} is not a link name",
                                  violations=[(path, "is required" if not name else
                                               f"{name[:80]!r} is not links/{{32 hex digits}}")])
        row = await self.store.lease(match.group(1))
        tenant = self._visible_tenant()
        if row is None or (tenant is not None and row.tenant != tenant):
            raise NotFound(f"{name} does not exist", reason="LINK_NOT_FOUND",
                           violations=[(path, "no such link")])
        return row

    # --- regions and gateways -------------------------------------------------------------

    @requires(READ, WRITE, OPERATOR)
    async def ListRegions(self, request, context):
        return pb.ListRegionsResponse(regions=[pb.Region(
            name=f"regions/{r.name}", display_name=r.display_name,
            location=common_pb2.GeodeticPoint(latitude_deg=r.latitude_deg,
                                              longitude_deg=r.longitude_deg),
            geography=r.geography, paired_region=r.paired_region or "")
            for r in self.broker.constellation.regions.regions])

    @requires(READ, WRITE, OPERATOR)
    async def ListGateways(self, request, context):
        check = Violations()
        size = page_size(request.page_size, check)
        after = decode_token(request.page_token, "gateways") or ""
        check.raise_if_any()
        rows = [r for r in await self.store.gateways() if r.id > after]
        page = rows[:size]
        return pb.ListGatewaysResponse(
            gateways=[gateway_pb(r, self.broker) for r in page],
            next_page_token=encode_token("gateways", page[-1].id) if len(rows) > size
            else "")

    async def _gateway_row(self, name: str) -> GatewayRecord:
        match = _GATEWAY.match(name or "")
        if not match:
            raise InvalidArgument("name is not a gateway name", violations=[(
                "name", "is required" if not name else f"{name[:80]!r} is not gateways/{{id}}")])
        row = await self.store.gateway(match.group(1))
        if row is None:
            raise NotFound(f"{name} does not exist", reason="GATEWAY_NOT_FOUND",
                           violations=[("name", "no such gateway")])
        return row

    @requires(READ, WRITE, OPERATOR)
    async def GetGateway(self, request, context):
        return pb.GetGatewayResponse(gateway=gateway_pb(await self._gateway_row(request.name),
                                                        self.broker))

    @requires(OPERATOR)
    async def CreateGateway(self, request, context):
        check = Violations()
        if not _ID.match(request.gateway_id):
            check.add("gateway_id", "must be 3 to 40 of a-z, 0-9 and '-', starting with a letter")
        require_request_id(check, request.request_id)
        g = request.gateway
        location_field(g.location, "gateway.location", check, g.HasField("location"))
        check.check(1 <= g.antennas <= 64, "gateway.antennas", "must be 1 to 64")
        region = self._region(g.region, "gateway.region", check)
        check.check(len(g.display_name) <= 200, "gateway.display_name",
                    "must be at most 200 characters")
        check.raise_if_any()
        key = Key(key_tenant(), request.request_id, "CreateGateway", fingerprint(
            "CreateGateway", request.SerializeToString(deterministic=True)))
        row = await self.broker.create_gateway(NewGateway(
            id=request.gateway_id, display_name=g.display_name or request.gateway_id,
            latitude_deg=g.location.latitude_deg, longitude_deg=g.location.longitude_deg,
            altitude_m=g.location.altitude_m, antennas=g.antennas, region=region,
            state=GatewayStatus.ACTIVE), key)
        return pb.CreateGatewayResponse(gateway=gateway_pb(row, self.broker))

    async def _gateway_state(self, request, state: GatewayStatus, method: str, response_type):
        """Drain or restore once per request_id; every retry gets the first answer (the
        links it re-planned included), stored serialized under the key."""
        check = Violations()
        require_request_id(check, request.request_id)
        check.raise_if_any()
        row = await self._gateway_row(request.name)
        key = Key(key_tenant(), request.request_id, method, fingerprint(method, request.name))

        def encode(gateway: GatewayRecord, replanned: int, degraded: int) -> bytes:
            answer = response_type(gateway=gateway_pb(gateway, self.broker))
            if replanned or degraded:
                answer.replanned_links, answer.degraded_links = replanned, degraded
            return answer.SerializeToString(deterministic=True)

        return response_type.FromString(
            await self.broker.gateway_state_once(row.id, state, key, encode))

    @requires(OPERATOR)
    async def DrainGateway(self, request, context):
        return await self._gateway_state(request, GatewayStatus.DRAINED, "DrainGateway",
                                         pb.DrainGatewayResponse)

    @requires(OPERATOR)
    async def RestoreGateway(self, request, context):
        return await self._gateway_state(request, GatewayStatus.ACTIVE, "RestoreGateway",
                                         pb.RestoreGatewayResponse)

    # --- paths --------------------------------------------------------------------------

    @requires(READ, WRITE, OPERATOR)
    async def EstimatePath(self, request, context):
        check = Violations()
        location_field(request.location, "location", check, request.HasField("location"))
        region = self._region(request.region, "region", check)
        window = window_field(request, check, self.broker.clock(), self.broker.settings)
        check.raise_if_any()
        loc = request.location
        plan = await self._plan(loc.latitude_deg, loc.longitude_deg, loc.altitude_m,
                                window, region)
        median, _ = plan.rtt_stats()
        return pb.EstimatePathResponse(slots=[slot_pb(p) for p in plan.paths],
                                       median_round_trip_ms=finite_or_zero(median),
                                       routed_fraction=plan.routed_fraction)

    async def _plan(self, lat, lon, alt, window, region) -> LinkPlan:
        try:
            return await self.broker.plan(lat, lon, alt, window[0], window[1], region)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"the orbit service did not answer: {error.code().name}",
                              reason="ORBIT_UNAVAILABLE") from None

    # --- links --------------------------------------------------------------------------

    @requires(WRITE, OPERATOR)
    async def RequestLink(self, request, context):
        check = Violations()
        customer = _CUSTOMER.match(request.customer or "")
        terminal = _TERMINAL.match(request.terminal or "")
        if not customer:
            check.add("customer", "is required" if not request.customer else
                      f"{request.customer[:80]!r} is not customers/{{customer}}")
        if not terminal:
            check.add("terminal", "is required" if not request.terminal else
                      f"{request.terminal[:80]!r} is not customers/{{c}}/terminals/{{t}}")
        elif customer and terminal.group(1) != customer.group(1):
            check.add("terminal", f"must be a terminal of {request.customer}")
        region = self._region(request.region, "region", check)
        check.check(math.isfinite(request.bandwidth_mbps) and request.bandwidth_mbps > 0,
                    "bandwidth_mbps", "must be a finite number above 0")
        window = window_field(request, check, self.broker.clock(), self.broker.settings)
        require_request_id(check, request.request_id)
        check.raise_if_any()
        principal = current_principal()
        digest = fingerprint("RequestLink", request.customer, request.terminal, region,
                             request.bandwidth_mbps, window[1],
                             request.window.start_time.seconds, request.window.end_time.seconds)
        # The key is the caller's (an operator's, not the customer's it acts for).
        key = Key(key_tenant(principal), request.request_id, "RequestLink", digest)

        async def lease_for() -> NewLease:
            answer = await self._entitlement(request, region)
            if not principal.has(OPERATOR) and answer.customer_tenant != principal.tenant:
                raise NotFound(f"{request.customer} does not exist",
                               reason="CUSTOMER_NOT_FOUND",
                               violations=[("customer", "no such customer")])
            self._require_entitled(answer, request)
            loc = answer.terminal_location
            return NewLease(
                id=secrets.token_hex(16), tenant=answer.customer_tenant,
                customer=customer.group(1), terminal=terminal.group(2),
                subscription=answer.subscription, region=region,
                bandwidth_mbps=request.bandwidth_mbps,
                priority=_PRIORITY.get(answer.priority_class, Priority.BEST_EFFORT),
                first_slot=window[0], end_slot=window[1], latitude_deg=loc.latitude_deg,
                longitude_deg=loc.longitude_deg, altitude_m=loc.altitude_m)

        try:
            row, plan = await self.broker.request_link_once(key, lease_for)
        except NoCoverage as gap:
            raise FailedPrecondition(
                str(gap), reason="NO_COVERAGE",
                metadata={"slot": gap.slot, "slot_start": slot_start(gap.slot).isoformat()},
                violations=[("terminal", f"no satellite above the mask in slot {gap.slot}")]
            ) from None
        except Oversubscribed as full:
            raise ResourceExhausted(
                f"no capacity: {full.resource} is full in slot {full.slot} "
                f"({slot_start(full.slot).isoformat()})", reason="CAPACITY_EXHAUSTED",
                metadata={"slot": full.slot, "slot_start": slot_start(full.slot).isoformat(),
                          "resource": full.resource}) from None
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"the orbit service did not answer: {error.code().name}",
                              reason="ORBIT_UNAVAILABLE") from None
        return pb.RequestLinkResponse(link=link_pb(row, slots=request.include_slots, plan=plan))

    async def _entitlement(self, request, region: str) -> prov.CheckEntitlementResponse:
        try:
            return await self.entitlements.check(prov.CheckEntitlementRequest(
                customer=request.customer, terminal=request.terminal,
                bandwidth_mbps=request.bandwidth_mbps, target_region=region))
        except grpc.aio.AioRpcError as error:
            raise Unavailable("the provisioning service did not answer the entitlement "
                              f"check: {error.code().name}",
                              reason="PROVISIONING_UNAVAILABLE") from None

    @staticmethod
    def _require_entitled(answer, request) -> None:
        if answer.allowed:
            return
        reason = prov.EntitlementReason.Name(answer.reason).removeprefix("ENTITLEMENT_REASON_")
        if reason == "CUSTOMER_NOT_FOUND":
            raise NotFound(f"{request.customer} does not exist", reason=reason,
                           violations=[("customer", "no such customer")])
        if reason == "TERMINAL_NOT_FOUND":
            raise NotFound(f"{request.terminal} does not exist", reason=reason,
                           violations=[("terminal", "no such terminal for this customer")])
        field = {"BANDWIDTH_EXCEEDS_PLAN": "bandwidth_mbps",
                 "REGION_NOT_IN_PLAN": "region"}.get(reason, "terminal")
        raise FailedPrecondition(f"not entitled: {answer.message}", reason=reason,
                                 metadata={"max_bandwidth_mbps": answer.max_bandwidth_mbps},
                                 violations=[(field, answer.message)])

    @requires(READ, WRITE, OPERATOR)
    async def GetLink(self, request, context):
        return pb.GetLinkResponse(link=link_pb(await self._link_row(request.name),
                                               slots=request.include_slots))

    @requires(READ, WRITE, OPERATOR)
    async def ListLinks(self, request, context):
        check = Violations()
        customer = None
        if request.customer:
            match = _CUSTOMER.match(request.customer)
            if match:
                customer = match.group(1)
            else:
                check.add("customer", f"{request.customer[:80]!r} is not customers/{{customer}}")
        size = page_size(request.page_size, check)
        scope = f"links:{request.customer}"
        try:
            after = links_after(decode_token(request.page_token, scope))
        except InvalidArgument as error:
            check.extend((v.field, v.description) for v in error.violations)
            after = None
        check.raise_if_any()
        rows = await self.store.list_leases(self._visible_tenant(), customer, after,
                                            size + 1)
        page = rows[:size]
        token = (encode_token(scope, [page[-1].create_time.isoformat(), page[-1].id])
                 if len(rows) > size else "")
        return pb.ListLinksResponse(links=[link_pb(r) for r in page], next_page_token=token)

    @requires(WRITE, OPERATOR)
    async def ReleaseLink(self, request, context):
        check = Violations()
        require_request_id(check, request.request_id)
        check.raise_if_any()
        row = await self._link_row(request.name)
        key = Key(key_tenant(), request.request_id, "ReleaseLink",
                  fingerprint("ReleaseLink", request.name))
        row = await self.broker.release_once(row.id, "released by the customer", key)
        return pb.ReleaseLinkResponse(link=link_pb(row))

    # --- watching -----------------------------------------------------------------------

    @requires(READ, WRITE, OPERATOR)
    async def WatchLink(self, request, context):
        row = await self._link_row(request.name)
        lease_id = row.id
        seen = await self.store.last_event_id(lease_id)
        plan = LinkPlan.decode(row.plan)
        now = self.broker.now_slot()
        state = row.state
        if state not in LIVE_STATES:
            yield pb.WatchLinkResponse(kind=pb.WatchLinkResponse.KIND_STATE_CHANGED,
                                       state=link_state(state), reason=row.state_reason,
                                       time=datetime_to_timestamp(row.update_time))
            return
        current = min(max(now, plan.first_slot), plan.end_slot - 1)
        yield self._change(pb.WatchLinkResponse.KIND_CURRENT, plan.path_at(current), state)
        told = current
        while True:
            for event in await self.store.events(lease_id, seen):
                seen = event.id
                state = event.state
                if event.kind == EventKind.REPLANNED:
                    fresh = await self.store.lease(lease_id)
                    plan = LinkPlan.decode(fresh.plan)
                    # A re-plan applies from the next slot on (the current one keeps its
                    # path): tell the first re-planned slot, not the unchanged current one.
                    slot = min(max(self.broker.now_slot() + 1, plan.first_slot),
                               plan.end_slot - 1)
                    yield self._change(pb.WatchLinkResponse.KIND_REPLANNED, plan.path_at(slot),
                                       state, event.reason, event.create_time)
                else:
                    yield pb.WatchLinkResponse(
                        kind=pb.WatchLinkResponse.KIND_STATE_CHANGED,
                        state=link_state(state), reason=event.reason,
                        time=datetime_to_timestamp(event.create_time))
                if state in _FINAL_STATES:
                    return
            now = self.broker.now_slot()
            for p in plan.changes():
                if told < p.slot <= now:
                    yield self._change(pb.WatchLinkResponse.KIND_HANDOVER, p, state)
            told = max(told, now)
            upcoming = [p.slot for p in plan.changes() if p.slot > now]
            due = (slot_start(upcoming[0]).timestamp() - self.broker.clock()) if upcoming \
                else 1.0
            changed = self.broker.changed
            await woken(changed, min(max(due, 0.01), 1.0))

    @staticmethod
    def _change(kind, path: SlotPath, state: LinkState, reason: str = "",
                when: datetime | None = None) -> pb.WatchLinkResponse:
        return pb.WatchLinkResponse(
            kind=kind, slot=slot_pb(path), state=link_state(state),
            reason=reason,
            time=datetime_to_timestamp(when) if when is not None else slot_ts(path.slot))
