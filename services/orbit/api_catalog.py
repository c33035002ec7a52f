"""The OrbitService catalog RPCs: import, generation, satellites, element sets, groups.

Translation only: the request to arguments (validated against the limits of
:mod:`services.orbit.api`), the use case in :class:`services.orbit.catalog_app.CatalogApp`
or a read of the :class:`services.orbit.store.Catalog`, the result to a message."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from skybridge.orbit.v1 import orbit_pb2

from services.orbit import omm, walker
from services.orbit.api_fields import (
    _FORMATS,
    _GROUP_ID,
    _KINDS,
    _NAME_PREFIX,
    MAX_ALTITUDE_KM,
    MAX_CATALOG_NUMBER,
    MAX_GENERATED_SATELLITES,
    MAX_IMPORT_BYTES,
    MAX_PLANES,
    MAX_REJECTIONS_LISTED,
    MAX_SATS_PER_PLANE,
    MIN_ALTITUDE_KM,
    RunCpu,
    _as_of,
    _decode_token,
    _digest,
    _encode_token,
    _group_id,
    _page_size,
    _parse_text,
    _rejection_violations,
    _satellite_number,
    _time,
    element_set_message,
    group_message,
    satellite_message,
)
from services.orbit.catalog import GroupKind
from services.orbit.catalog_app import CatalogApp
from services.orbit.store import Catalog, epoch_us
from shared.auth import requires
from shared.errors import InvalidArgument, NotFound, Violations
from shared.idempotency import request_id_problem

__all__ = ["CatalogRpcs"]


class CatalogRpcs:
    """The catalog half of :class:`services.orbit.api.OrbitServicer`."""

    catalog: Catalog
    app: CatalogApp
    run_cpu: RunCpu

    # -- import & generation ------------------------------------------------------
    @requires("orbit.write")
    async def ImportElementSets(self, request, context):
        check = Violations()
        text = request.text
        check.require(text, "text", "is required (TLE or OMM text)")
        size = len(text.encode("utf-8", "surrogatepass"))
        check.check(size <= MAX_IMPORT_BYTES, "text",
                    f"at most {MAX_IMPORT_BYTES} bytes, got {size}")
        check.check(request.format in (0, *_FORMATS), "format", "unknown format")
        group_id = request.group_id
        if group_id:
            check.check(bool(_GROUP_ID.match(group_id)), "group_id",
                        f"must match {_GROUP_ID.pattern}")
        check.check(len(request.group_display_name) <= 200, "group_display_name",
                    "at most 200 characters")
        problem = request_id_problem(request.request_id, required=False)
        if problem:
            check.add("request_id", problem)
        check.raise_if_any("the import request is invalid")
        fmt = _FORMATS.get(request.format) or omm.detect_format(text)
        good, bad = await self.run_cpu(_parse_text, text, fmt)
        if not good:
            if not bad:
                raise InvalidArgument("the text holds no element sets", reason="EMPTY_CATALOG",
                                      violations=[("text", "contains no TLE or OMM records")])
            raise InvalidArgument(
                f"all {len(bad)} records were rejected; nothing was stored",
                reason="NO_VALID_RECORDS", violations=_rejection_violations(bad))
        group = None
        if group_id:
            group = (group_id, request.group_display_name or group_id, GroupKind.IMPORT)

        def answer(outcome) -> orbit_pb2.ImportElementSetsResponse:
            return orbit_pb2.ImportElementSetsResponse(
                added_count=outcome.added,
                updated_count=outcome.updated,
                unchanged_count=outcome.unchanged,
                rejected_count=len(bad),
                rejected_records=[
                    orbit_pb2.RejectedRecord(line_number=r.line_number, reason=r.reason,
                                             field=r.key or "")
                    for r in bad[:MAX_REJECTIONS_LISTED]],
                group=f"groups/{group_id}" if group_id else "",
                catalog_version=outcome.version,
            )

        return await self.app.import_element_sets(
            request, good, group, answer,
            orbit_pb2.ImportElementSetsResponse.FromString)

    @requires("orbit.write")
    async def GenerateConstellation(self, request, context):
        check = Violations()
        shells: list[walker.WalkerShell] = []
        if bool(request.preset) == bool(len(request.shells)):
            check.add("preset", "set exactly one of preset and shells")
        elif request.preset:
            if request.preset not in walker.PRESETS:
                check.add("preset", f"unknown preset; known: {', '.join(sorted(walker.PRESETS))}")
            else:
                shells = list(walker.PRESETS[request.preset])
        else:
            for i, s in enumerate(request.shells):
                f = f"shells[{i}]"
                ok = check.check(1 <= s.planes <= MAX_PLANES, f"{f}.planes",
                                 f"must be 1..{MAX_PLANES}")
                ok &= check.check(1 <= s.satellites_per_plane <= MAX_SATS_PER_PLANE,
                                  f"{f}.satellites_per_plane", f"must be 1..{MAX_SATS_PER_PLANE}")
                ok &= check.check(0 <= s.phasing < max(s.planes, 1), f"{f}.phasing",
                                  "must be 0 <= phasing < planes")
                ok &= check.check(
                    np.isfinite(s.altitude_km) and MIN_ALTITUDE_KM <= s.altitude_km
                    <= MAX_ALTITUDE_KM, f"{f}.altitude_km",
                    f"must be {MIN_ALTITUDE_KM:g}..{MAX_ALTITUDE_KM:g} km")
                ok &= check.check(np.isfinite(s.inclination_deg)
                                  and 0.0 <= s.inclination_deg <= 180.0,
                                  f"{f}.inclination_deg", "must be 0..180 degrees")
                ok &= check.check(np.isfinite(s.raan_offset_deg)
                                  and 0.0 <= s.raan_offset_deg <= 360.0,
                                  f"{f}.raan_offset_deg", "must be 0..360 degrees")
                prefix = s.name_prefix or f"{request.group_id.upper()}-S{i + 1}"
                ok &= check.check(bool(_NAME_PREFIX.match(prefix[:40])) and len(prefix) <= 40,
                                  f"{f}.name_prefix", f"must match {_NAME_PREFIX.pattern}")
                if ok:
                    shells.append(walker.WalkerShell(
                        s.planes, s.satellites_per_plane, s.phasing, s.altitude_km,
                        s.inclination_deg, s.raan_offset_deg, name=prefix))
        total = sum(s.total for s in shells)
        check.check(total <= MAX_GENERATED_SATELLITES, "shells",
                    f"at most {MAX_GENERATED_SATELLITES} satellites per request, got {total}")
        if check.require(request.group_id, "group_id"):
            check.check(bool(_GROUP_ID.match(request.group_id)), "group_id",
                        f"must match {_GROUP_ID.pattern}")
        check.check(len(request.display_name) <= 200, "display_name", "at most 200 characters")
        check.check(request.kind in (0, *_KINDS), "kind", "unknown kind")
        epoch = datetime.now(UTC).replace(microsecond=0)
        if request.HasField("epoch_time"):
            epoch = _time(check, request.epoch_time, "epoch_time") or epoch
        first = request.first_catalog_number
        if first:
            check.check(first + total - 1 <= MAX_CATALOG_NUMBER, "first_catalog_number",
                        f"the last number must not exceed {MAX_CATALOG_NUMBER}")
        problem = request_id_problem(request.request_id, required=False)
        if problem:
            check.add("request_id", problem)
        check.raise_if_any("the constellation request is invalid")
        kind = _KINDS.get(request.kind) or (
            GroupKind.SENSORS if request.preset == "tracking_sensors"
            else GroupKind.CONSTELLATION)
        def answer(made) -> orbit_pb2.GenerateConstellationResponse:
            return orbit_pb2.GenerateConstellationResponse(
                group=group_message(made.group), satellite_count=made.count,
                first_catalog_number=made.first_catalog_number,
                last_catalog_number=made.first_catalog_number + made.count - 1,
                catalog_version=made.outcome.version)

        return await self.app.generate_constellation(
            request, group_id=request.group_id,
            display_name=request.display_name or request.group_id, kind=kind, shells=shells,
            epoch=epoch, first=first or None, answer=answer,
            decode=orbit_pb2.GenerateConstellationResponse.FromString)

    # -- queries -------------------------------------------------------------------
    @requires("orbit.read")
    async def GetSatellite(self, request, context):
        check = Violations()
        number = _satellite_number(check, request.name, "name")
        as_of = _as_of(check, request)
        check.raise_if_any()
        sat = await self.catalog.get_satellite(number, as_of)  # type: ignore[arg-type]
        if sat is None:
            raise NotFound(f"{request.name} not found", reason="SATELLITE_NOT_FOUND",
                           violations=[("name", f"no satellite {number}")])
        if as_of is not None and sat.element_set is None:
            raise NotFound(f"{request.name} has no element set at or before as_of_time",
                           reason="ELEMENT_SET_NOT_FOUND",
                           violations=[("as_of_time", "before the oldest element set")])
        return orbit_pb2.GetSatelliteResponse(satellite=satellite_message(sat))

    @requires("orbit.read")
    async def ListSatellites(self, request, context):
        check = Violations()
        size = _page_size(check, request.page_size)
        group_id = ""
        if request.group:
            group_id = _group_id(check, request.group, "group") or ""
        lo = request.min_catalog_number if request.HasField("min_catalog_number") else None
        hi = request.max_catalog_number if request.HasField("max_catalog_number") else None
        if lo is not None and hi is not None:
            check.check(lo <= hi, "max_catalog_number", "must be >= min_catalog_number")
        check.check(len(request.name_contains) <= 64, "name_contains", "at most 64 characters")
        filters = _digest(request.name_contains, request.group, lo, hi)
        after = _decode_token(check, request.page_token, filters, int)
        check.raise_if_any()
        if group_id and await self.catalog.get_group(group_id) is None:
            raise NotFound(f"group {group_id} not found", reason="GROUP_NOT_FOUND",
                           violations=[("group", f"no group {request.group!r}")])
        sats, total = await self.catalog.list_satellites(
            after=after, limit=size + 1, name_contains=request.name_contains,
            group_id=group_id, min_number=lo, max_number=hi)
        more = len(sats) > size
        sats = sats[:size]
        token = _encode_token(sats[-1].catalog_number, filters) if more and sats else ""
        return orbit_pb2.ListSatellitesResponse(
            satellites=[satellite_message(s) for s in sats], next_page_token=token,
            total_size=total)

    @requires("orbit.read")
    async def ListElementSets(self, request, context):
        check = Violations()
        number = _satellite_number(check, request.parent, "parent")
        size = _page_size(check, request.page_size)
        filters = _digest(request.parent)
        before = _decode_token(check, request.page_token, filters, int)
        check.raise_if_any()
        sets = await self.catalog.list_element_sets(number, before_us=before,  # type: ignore[arg-type]
                                                    limit=size + 1)
        if sets is None:
            raise NotFound(f"{request.parent} not found", reason="SATELLITE_NOT_FOUND",
                           violations=[("parent", f"no satellite {number}")])
        more = len(sets) > size
        sets = sets[:size]
        token = ""
        if more and sets:
            token = _encode_token(epoch_us(sets[-1].elements), filters)
        return orbit_pb2.ListElementSetsResponse(
            element_sets=[element_set_message(s) for s in sets], next_page_token=token)

    @requires("orbit.read")
    async def GetGroup(self, request, context):
        check = Violations()
        group_id = _group_id(check, request.name, "name")
        check.raise_if_any()
        group = await self.catalog.get_group(group_id)  # type: ignore[arg-type]
        if group is None:
            raise NotFound(f"{request.name} not found", reason="GROUP_NOT_FOUND",
                           violations=[("name", f"no group {request.name!r}")])
        return orbit_pb2.GetGroupResponse(group=group_message(group))

    @requires("orbit.read")
    async def ListGroups(self, request, context):
        check = Violations()
        size = _page_size(check, request.page_size)
        after = _decode_token(check, request.page_token, "groups", str)
        check.raise_if_any()
        groups = await self.catalog.list_groups(after=after, limit=size + 1)
        more = len(groups) > size
        groups = groups[:size]
        token = _encode_token(groups[-1].group_id, "groups") if more and groups else ""
        return orbit_pb2.ListGroupsResponse(groups=[group_message(g) for g in groups],
                                            next_page_token=token)

