"""The link broker's export RPC (a mixin of `LinkBrokerServicer`): a link's stored plan, or
EstimatePath's plan, as CZML in chunks of at most 1 MiB (see
`services/linkbroker/export_czml.py`), at most `MAX_EXPORT_SLOTS` slots (6 hours)."""

from __future__ import annotations

import grpc
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb

from services.linkbroker.export_czml import (
    CZML_MEDIA_TYPE,
    MAX_EXPORT_SLOTS,
    Place,
    Samples,
    chunks,
    path_czml,
    wanted_samples,
)
from services.linkbroker.fields import location_field, time_field, window_field
from services.linkbroker.plan import LinkPlan
from services.linkbroker.scopes import OPERATOR, READ, WRITE
from services.linkbroker.slots import SLOT_SECONDS, slot_start
from shared.auth import requires
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable, Violations


class ExportRpcs:
    """Needs the servicer's `broker`, `store`, `_link_row`, `_region` and `_plan`."""

    @requires(READ, WRITE, OPERATOR)
    async def ExportPathCzml(self, request, context):
        """A link's stored plan, or EstimatePath's plan, as CZML in chunks (see
        :mod:`services.linkbroker.export_czml`)."""
        which = request.WhichOneof("source")
        if which is None:
            raise InvalidArgument("one of link or estimate is required", violations=[
                ("link", "one of link or estimate is required")])
        if which == "link":
            title, paths, terminal, region = await self._link_export(request)
        else:
            title, paths, terminal, region = await self._estimate_export(request)
        slots, numbers = wanted_samples(paths)
        try:
            positions = await self.broker.positions(slots, numbers)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"the orbit service did not answer: {error.code().name}",
                              reason="ORBIT_UNAVAILABLE") from None
        gateways = {}
        for gateway_id in sorted({p.gateway for p in paths if p.routed}):
            row = self.broker.gateway_records.get(gateway_id) or await self.store.gateway(
                gateway_id)
            if row is not None:
                gateways[gateway_id] = Place(f"gateways/{gateway_id}", row.display_name,
                                             row.latitude_deg, row.longitude_deg,
                                             row.altitude_m)
        azure = self.broker.constellation.regions.get(region)
        document = await self.broker.run_cpu(
            path_czml, title, paths, terminal, gateways,
            Place(f"regions/{region}", azure.display_name, azure.latitude_deg,
                  azure.longitude_deg),
            Samples(slots, numbers, positions))
        for chunk in chunks(document):
            yield pb.ExportPathCzmlResponse(content_type=CZML_MEDIA_TYPE, data=chunk,
                                            slots=len(paths))

    @staticmethod
    def _export_size(n_slots: int, field: str) -> None:
        if n_slots > MAX_EXPORT_SLOTS:
            raise ResourceExhausted(
                f"{field} spans {n_slots} slots; an export holds at most {MAX_EXPORT_SLOTS} "
                "(6 hours, aligned outward to slots)",
                reason="EXPORT_TOO_LARGE", metadata={"limit_slots": MAX_EXPORT_SLOTS},
                violations=[(field, f"spans {n_slots} slots; at most {MAX_EXPORT_SLOTS} "
                                    "slots (6 hours) an export: choose a shorter window")])

    async def _link_export(self, request):
        row = await self._link_row(request.link, "link")
        plan = LinkPlan.decode(row.plan)
        first, end = plan.first_slot, plan.end_slot
        if request.HasField("window"):
            check = Violations()
            start = time_field(check, request.window, "start_time", "window.start_time")
            stop = time_field(check, request.window, "end_time", "window.end_time")
            check.raise_if_any()
            assert start is not None and stop is not None
            check.check(stop > start, "window.end_time", "must be after window.start_time")
            check.raise_if_any()
            first = max(first, int(start // SLOT_SECONDS))
            end = min(end, int(-(-stop // SLOT_SECONDS)))
            check.check(end > first, "window", f"does not overlap the link's window "
                                               f"({slot_start(plan.first_slot).isoformat()} to "
                                               f"{slot_start(plan.end_slot).isoformat()})")
            check.raise_if_any()
        self._export_size(end - first, "window")
        paths = plan.paths[first - plan.first_slot:end - plan.first_slot]
        terminal = Place("terminal", f"customers/{row.customer}/terminals/{row.terminal}",
                         row.latitude_deg, row.longitude_deg, row.altitude_m)
        return f"links/{row.id}", paths, terminal, row.region

    async def _estimate_export(self, request):
        check = Violations()
        if request.HasField("window"):
            check.add("window", "is only for a link: an estimate has its own window "
                                "(estimate.window)")
        est = request.estimate
        location_field(est.location, "estimate.location", check, est.HasField("location"))
        region = self._region(est.region, "estimate.region", check)
        inner = Violations()
        window = window_field(est, inner, self.broker.clock(), self.broker.settings)
        check.extend((f"estimate.{v.field}", v.description) for v in inner.items)
        check.raise_if_any()
        assert window is not None and region is not None
        self._export_size(window[1] - window[0], "estimate.window")
        loc = est.location
        plan = await self._plan(loc.latitude_deg, loc.longitude_deg, loc.altitude_m,
                                window, region)
        terminal = Place("terminal", f"Terminal at {loc.latitude_deg:.4f}, "
                                     f"{loc.longitude_deg:.4f}",
                         loc.latitude_deg, loc.longitude_deg, loc.altitude_m)
        return "estimate", plan.paths, terminal, region
