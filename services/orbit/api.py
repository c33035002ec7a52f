"""The OrbitService servicer: proto <-> domain, validation, limits. No science, no
transactions, caches or idempotency here (those are :mod:`services.orbit.catalog_app`'s).

The RPCs are written by concern: the catalog's in :mod:`services.orbit.api_catalog`, the
geometry's (propagation, visibility, passes) in :mod:`services.orbit.api_geometry`, the
ephemeris export (CCSDS OEM, CZML) in :mod:`services.orbit.api_exports`, the field rules
and message conversions they share in :mod:`services.orbit.api_fields`.

Scopes: ``orbit.read`` for GetSatellite, ListSatellites, ListElementSets, GetGroup,
ListGroups, Propagate, VisibleSatellites, PredictPasses, ExportEphemeris; ``orbit.write``
for ImportElementSets and GenerateConstellation.

Limits (module constants; every refusal names the field and the limit in a BadRequest):

=================================  =============================================  ===================
what                               limit                                          answer
=================================  =============================================  ===================
page_size                          0 (default 100) .. 1000; negative refused      INVALID_ARGUMENT
import text                        1 byte .. 64 MiB, at least one record          INVALID_ARGUMENT
rejections listed in an answer     1000 (``rejected_count`` stays exact)          -
generated satellites per request   20,000; planes and per-plane 1..1000           INVALID_ARGUMENT
instants per Propagate             1 .. 100,000                                   INVALID_ARGUMENT
satellites x instants per request  20,000,000 (a catalog-day is ~15 million)      RESOURCE_EXHAUSTED
grid step                          1 ms .. 1 day                                  INVALID_ARGUMENT
time range                         1957-10-04 .. 2099-12-31 UTC                   INVALID_ARGUMENT
|time - element-set epoch|         30 days, for every selected satellite          INVALID_ARGUMENT
explicit selection                 50,000 catalog numbers or names, no repeats    INVALID_ARGUMENT
ground points (VisibleSatellites)  100,000; answer at most 48 MiB of pairs        INVALID_ARGUMENT / RESOURCE_EXHAUSTED
PredictPasses                      1,000 points, 7-day window,                    INVALID_ARGUMENT /
                                   points x satellites x coarse steps <= 2e8,     RESOURCE_EXHAUSTED
                                   100,000 passes
ExportEphemeris samples            1 .. 100,000 per satellite                     INVALID_ARGUMENT
                                   (window / step, plus the window's end)
satellites x samples per export    20,000,000                                     RESOURCE_EXHAUSTED
export step, window bounds         1 ms .. 1 day; whole microseconds              INVALID_ARGUMENT
Propagate and export streams       2 at once (more wait their turn; a stream      -
computing                          waiting on its reader holds no slot)
=================================  =============================================  ===================

ExportEphemeris streams its document in messages of at most 1 MiB, computed in satellite
batches of at most 200,000 satellites x samples (``services.orbit.export_app``), one batch
being sent while the next is computed.

Propagate streams time-major chunks of at most ``CHUNK_STATE_BUDGET`` states
(satellites x instants; ~15 MB of float64 positions), computing the next ``PIPELINE_DEPTH``
(2) chunks in the thread pool while the current one is written, so that a stream holds about
three chunks and two sets of work buffers in memory whatever its length (peak resident
memory of the service for a catalog-day: 385-470 MB, `bench/orbit.py`).
"""

from __future__ import annotations

import asyncio

from skybridge.orbit.v1 import orbit_pb2_grpc

from services.orbit.api_catalog import CatalogRpcs
from services.orbit.api_exports import ExportRpcs
from services.orbit.api_fields import (
    MAX_CONCURRENT_PROPAGATIONS,
    MAX_IMPORT_BYTES,
    MAX_PASS_POINTS,
    MAX_PLANES,
    MAX_SELECTION,
    MAX_STEPS,
    MAX_VISIBILITY_POINTS,
    RunCpu,
)
from services.orbit.api_geometry import GeometryRpcs
from services.orbit.catalog_app import CatalogApp
from services.orbit.store import Catalog
from shared.validation import Rules

__all__ = ["MAX_CONCURRENT_PROPAGATIONS", "MAX_IMPORT_BYTES", "REQUEST_RULES",
           "OrbitServicer"]

_V1 = "skybridge.orbit.v1."

#: The contract checks beyond the descriptors (`shared.validation`): the caps of the
#: limits table above and the "exactly one of" groups that are not proto oneofs.
REQUEST_RULES = Rules(
    max_items={
        f"{_V1}TimeList.times": MAX_STEPS,
        f"{_V1}SatelliteSelection.satellites": MAX_SELECTION,
        f"{_V1}SatelliteSelection.catalog_numbers": MAX_SELECTION,
        f"{_V1}VisibleSatellitesRequest.points": MAX_VISIBILITY_POINTS,
        f"{_V1}PredictPassesRequest.points": MAX_PASS_POINTS,
        f"{_V1}GenerateConstellationRequest.shells": MAX_PLANES,
    },
    max_chars={f"{_V1}ImportElementSetsRequest.text": MAX_IMPORT_BYTES},
    at_most_one={
        f"{_V1}SatelliteSelection": [("catalog_numbers", "satellites", "group", "all")],
        f"{_V1}GenerateConstellationRequest": [("preset", "shells")],
        f"{_V1}VisibleSatellitesRequest": [("points", "point_array")],
    },
)


class OrbitServicer(CatalogRpcs, GeometryRpcs, ExportRpcs,
                    orbit_pb2_grpc.OrbitServiceServicer):
    """Translates OrbitService calls to the catalog application and the orbit domain."""

    request_rules = REQUEST_RULES

    def __init__(self, catalog: Catalog, run_cpu: RunCpu):
        self.catalog = catalog
        self.run_cpu = run_cpu
        self.app = CatalogApp(catalog, run_cpu)
        self._streams = asyncio.Semaphore(MAX_CONCURRENT_PROPAGATIONS)

    async def warm(self) -> None:
        """The start-up hook: :meth:`CatalogApp.warm`."""
        await self.app.warm()
