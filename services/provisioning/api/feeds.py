"""The servicer's reading parts: entitlement checks, the event feed, audit records."""

from __future__ import annotations

from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import resources_pb2 as res

from shared.auth import current_principal, requires
from shared.errors import InvalidArgument, NotFound, Violations
from shared.paging import encode_token
from shared.status import to_status
from shared.validation import item_violations
from shared.wakeup import woken

from .. import domain
from ..domain.access import EVENTS, OPERATOR, PARTNER, READERS
from .base import Base
from .checks import DOMAIN, MAX_BATCH_CHECKS, entitlement_args
from .convert import audit_pb, entitlement_pb, enum_name, event_pb
from .names import NAMES, decode_cursor, page_args

EVENT_BATCH = 200


class Feeds(Base):
    # --- entitlements ---------------------------------------------------------------------

    @requires(domain.ENTITLEMENTS, OPERATOR)
    async def CheckEntitlement(self, request, context):
        check = Violations()
        ids = entitlement_args(request, check)
        check.raise_if_any()
        answer = await self.store.check_entitlement(*ids, request.bandwidth_mbps,
                                                    request.target_region)
        return entitlement_pb(answer)

    @requires(domain.ENTITLEMENTS, OPERATOR)
    async def BatchCheckEntitlements(self, request, context):
        count = len(request.checks)
        if not 1 <= count <= MAX_BATCH_CHECKS:
            raise InvalidArgument(f"checks: {count} checks; send 1 to {MAX_BATCH_CHECKS}",
                                  violations=[("checks", f"must hold 1 to {MAX_BATCH_CHECKS} "
                                                         f"checks (got {count})")])
        results: list = [None] * count
        valid: list[int] = []
        checks: list[tuple[str, str, float, str]] = []
        for i, item in enumerate(request.checks):
            check = Violations()
            ids = entitlement_args(item, check, f"checks[{i}].")
            # and the contract checks the batch's rules leave to each item, once per field
            named = {v.field for v in check.items}
            check.items.extend(v for v in item_violations(item, f"checks[{i}]")
                               if v.field not in named)
            if check:
                try:
                    check.raise_if_any(f"check {i} is invalid")
                except InvalidArgument as error:
                    results[i] = pb.BatchCheckEntitlementsResponse.Result(
                        error=to_status(error, DOMAIN))
            else:
                valid.append(i)
                checks.append((*ids, item.bandwidth_mbps, item.target_region))
        answers = await self.store.check_entitlements(checks)
        for i, answer in zip(valid, answers, strict=True):
            results[i] = pb.BatchCheckEntitlementsResponse.Result(answer=entitlement_pb(answer))
        return pb.BatchCheckEntitlementsResponse(results=results)

    # --- event feed -----------------------------------------------------------------------

    @requires(*READERS, EVENTS)
    async def WatchEvents(self, request, context):
        after = decode_cursor(request.start_cursor)
        if any(t == 0 for t in request.types):
            raise InvalidArgument("types must not contain TYPE_UNSPECIFIED",
                                  violations=[("types", "must not contain TYPE_UNSPECIFIED")])
        types = frozenset(enum_name(res.Event.Type, t, "TYPE_") for t in request.types)
        audience = domain.read_audience(current_principal(), all_scopes=(OPERATOR, EVENTS))
        while True:
            signal = self.store.event_signal
            batch = await self.store.read_events(audience, after, EVENT_BATCH, types)
            for event in batch:
                yield pb.WatchEventsResponse(event=event_pb(event))
                after = event.position
            if len(batch) < EVENT_BATCH:
                # Woken at once by this replica's commits and by other replicas' (LISTEN/
                # NOTIFY on PostgreSQL); the poll is a safety net.
                await woken(signal, self.store.event_poll_seconds)

    # --- audit ----------------------------------------------------------------------------

    @requires(*READERS)
    async def ListAuditRecords(self, request, context):
        check = Violations()
        after, size = page_args(request, f"audit:{request.parent}", check)
        check.require(request.parent, "parent")
        check.raise_if_any()
        await self._authorize_resource(request.parent)
        items, last = await self.store.list_audit(request.parent, after, size)
        return pb.ListAuditRecordsResponse(
            audit_records=[audit_pb(d) for d in items],
            next_page_token=encode_token(f"audit:{request.parent}", last) if last else "")

    async def _authorize_resource(self, name: str) -> None:
        """NOT_FOUND unless the caller may read `name` (the same rules as its Get)."""
        principal = current_principal()
        audience = domain.read_audience(principal)
        for kind, pattern in NAMES.items():
            match = pattern.match(name)
            if not match:
                continue
            ids = match.groups()
            if kind == "partner":
                await self.store.get_partner(*ids)
            elif kind == "plan":
                await self.store.get_plan(*ids)
            elif kind == "referral":
                if not principal.has(PARTNER, OPERATOR):
                    break
                await self.store.get_referral(principal, *ids)
            elif kind == "customer":
                await self.store.get_customer(audience, *ids)
            elif kind == "subscription":
                await self.store.get_subscription(audience, *ids)
            elif kind == "operation":
                await self.store.get_operation(audience, *ids)
            elif kind == "terminal":
                await self.store.get_terminal(audience, *ids)
            return
        raise NotFound(f"{name[:200]} does not exist", reason="RESOURCE_NOT_FOUND",
                       metadata={"resource": name[:200]})
