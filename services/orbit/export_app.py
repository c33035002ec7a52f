"""The ephemeris export use case (CCSDS OEM or CZML for a selection over a window), in the
catalog's application layer beside :mod:`services.orbit.catalog_app`.

A request, once the servicer has validated it and :class:`CatalogApp` has resolved its
selection, becomes an :class:`ExportPlan`: the snapshot's columns, the sample instants
(``start + k * step`` before the end, and the end itself) and the satellite batches.
:func:`export_chunks` then streams the document:

* each batch of satellites (at most :data:`BATCH_SAMPLES` satellites x samples) is
  propagated with the orbit kernel (:class:`services.orbit.kernel.CatalogPropagator`,
  SGP4 through heyoka / python-sgp4, built for the batch: about 25 ms) and put in its frame
  by :mod:`services.orbit.states` (TEME for OEM; ITRF, via ``shared.frames.teme_to_itrf``,
  for CZML), then formatted by :mod:`services.orbit.export_oem` or
  :mod:`services.orbit.export_czml`, all in one trip to the CPU pool;
* its text goes out as chunks of at most :data:`CHUNK_BYTES`, while the next batch is
  computed; a stream holds one batch being sent and one being computed, whatever the
  selection (the whole catalog included).

Samples SGP4 flags (error code != 0: decayed, bad elements) are left out; a satellite with
no valid sample is left out of the document and reported in its chunk.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np

from services.orbit import export_czml, export_oem
from services.orbit.catalog import CatalogSnapshot
from services.orbit.elements import ElementSet
from services.orbit.kernel import CatalogPropagator
from services.orbit.states import Frame, compute_component_chunk

__all__ = [
    "BATCH_SAMPLES",
    "CHUNK_BYTES",
    "MAX_EXPORT_SAMPLES",
    "MAX_SAMPLES_PER_SATELLITE",
    "ExportChunk",
    "ExportFormat",
    "ExportPlan",
    "export_chunks",
    "plan_export",
    "render_batch",
    "sample_count",
]

#: Samples (instants) per satellite in one export.
MAX_SAMPLES_PER_SATELLITE = 100_000
#: Satellites x samples in one export (the same budget as a Propagate request; a
#: 10,000-satellite catalog-day at 60 s is 14.4 million).
MAX_EXPORT_SAMPLES = 20_000_000
#: Satellites x samples propagated and formatted in one CPU job (at least one satellite):
#: ~25 MB of OEM text, ~10 MB of CZML.
BATCH_SAMPLES = 200_000
#: Largest ``data`` of one streamed message.
CHUNK_BYTES = 1 << 20
ORIGINATOR = "SKYBRIDGE"
_US_PER_DAY = 86_400_000_000
_JD_UNIX_EPOCH = 2440587.5

RunCpu = Callable[..., Awaitable]


class ExportFormat(StrEnum):
    """The document an export writes."""

    OEM = "oem"
    CZML = "czml"


MEDIA_TYPES = {ExportFormat.OEM: "text/plain; charset=us-ascii",
               ExportFormat.CZML: "application/json"}


def sample_count(start_us: int, end_us: int, step_us: int) -> int:
    """Instants ``start + k * step`` before ``end``, plus ``end`` itself (``end > start``,
    ``step > 0``, all integer microseconds)."""
    return -(-(end_us - start_us) // step_us) + 1


def sample_times(start_us: int, end_us: int, step_us: int) -> np.ndarray:
    """The :func:`sample_count` instants, int64 UTC microseconds since 1970, increasing."""
    n = sample_count(start_us, end_us, step_us)
    times = start_us + step_us * np.arange(n, dtype=np.int64)
    times[-1] = end_us
    return times


def unix_us_to_jd(unix_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-part UTC Julian dates ``(jd, fr)`` (``jd`` at 0h) of integer microseconds, as
    Propagate's explicit instants are converted."""
    days, rest = np.divmod(np.asarray(unix_us, dtype=np.int64), _US_PER_DAY)
    return _JD_UNIX_EPOCH + days.astype(np.float64), rest.astype(np.float64) / _US_PER_DAY


@dataclass(frozen=True)
class ExportChunk:
    """One streamed piece: the next ``data`` of the document, and the catalog numbers of
    satellites left out of it (every sample flagged)."""

    data: bytes
    omitted: tuple[int, ...] = ()


@dataclass(frozen=True)
class ExportPlan:
    """What an export writes: ``columns`` of ``snapshot`` at the instants ``times_us``."""

    format: ExportFormat
    snapshot: CatalogSnapshot
    columns: np.ndarray
    times_us: np.ndarray
    created: datetime
    batches: tuple[tuple[int, int], ...]
    jd: np.ndarray = field(repr=False)
    fr: np.ndarray = field(repr=False)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(self.times_us[0]))

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(self.times_us[-1]))

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def file_name(self) -> str:
        return f"skybridge-ephemeris-{self.start:%Y%m%dT%H%M%SZ}.{self.format.value}"


def plan_export(fmt: ExportFormat, snapshot: CatalogSnapshot, columns: np.ndarray,
                times_us: np.ndarray, *, batch_samples: int = BATCH_SAMPLES,
                created: datetime | None = None) -> ExportPlan:
    """The plan of an export: the ``columns`` in catalog-number order, in batches of at most
    ``batch_samples`` satellites x samples each (at least one satellite per batch)."""
    columns = np.sort(np.asarray(columns))  # the snapshot is in catalog-number order
    per_batch = max(1, batch_samples // max(1, times_us.size))
    n = int(columns.size)
    batches = tuple((i, min(i + per_batch, n)) for i in range(0, n, per_batch))
    jd, fr = unix_us_to_jd(times_us)
    return ExportPlan(fmt, snapshot, columns, np.asarray(times_us, np.int64),
                      created or datetime.now(UTC), batches, jd, fr)


# -- one batch: propagate, frame, format ---------------------------------------------------


def _oem_header(plan: ExportPlan) -> str:
    return export_oem.oem_header(plan.created, ORIGINATOR, (
        f"Skybridge orbit service: SGP4 ephemerides of {plan.columns.size} satellite(s) "
        f"from catalog version {plan.snapshot.version}",
        "REF_FRAME TEME is SGP4's output frame (true equator, mean equinox of date); "
        "positions in km, velocities in km/s",
        "Samples SGP4 flags (decayed or invalid elements) are left out"))


def _oem_batch(plan: ExportPlan, sets: list[ElementSet], prop: CatalogPropagator
               ) -> tuple[bytes, list[int]]:
    chunk = compute_component_chunk(prop, plan.jd, plan.fr, Frame.TEME, True)
    assert chunk.velocity is not None
    objects = [export_oem.OemObject(
        object_name=es.name or str(es.catalog_number),
        object_id=export_oem.international_designator(es.intl_designator, es.catalog_number),
        comments=(f"NORAD catalog number {es.catalog_number}; SGP4 element set epoch "
                  f"{es.epoch:%Y-%m-%dT%H:%M:%S.%f} UTC",))
        for es in sets]
    text, omitted = export_oem.oem_segments(
        objects, plan.times_us, chunk.position.transpose(2, 0, 1),
        chunk.velocity.transpose(2, 0, 1), (chunk.error == 0).T, ref_frame="TEME")
    return text, omitted


def _czml_batch(plan: ExportPlan, sets: list[ElementSet], prop: CatalogPropagator
                ) -> tuple[bytes, list[int]]:
    chunk = compute_component_chunk(prop, plan.jd, plan.fr, Frame.ITRF, False)
    objects = [export_czml.CzmlObject(id=f"satellites/{es.catalog_number}",
                                      name=es.name or f"satellites/{es.catalog_number}")
               for es in sets]
    offsets_s = (plan.times_us - plan.times_us[0]) / 1e6
    packets, omitted = export_czml.satellite_packets(
        objects, plan.start, offsets_s, chunk.position.transpose(2, 0, 1) * 1000.0,
        (chunk.error == 0).T)
    text = "".join(export_czml.SEPARATOR + p for p in packets)
    return text.encode("utf-8"), omitted


def render_batch(plan: ExportPlan, k: int) -> tuple[bytes, tuple[int, ...]]:
    """The document text of batch ``k`` (with the document's opening before the first
    batch and its closing after the last), and the catalog numbers it leaves out. CPU
    work: run it in the pool."""
    i, j = plan.batches[k]
    columns = plan.columns[i:j]
    sets = plan.snapshot.subset(columns)
    prop = CatalogPropagator(sets)
    if plan.format == ExportFormat.OEM:
        body, omitted = _oem_batch(plan, sets, prop)
        head = _oem_header(plan).encode("ascii") if k == 0 else b""
        tail = b""
    else:
        body, omitted = _czml_batch(plan, sets, prop)
        head = (export_czml.OPEN + export_czml.document_packet(
            "Skybridge ephemerides", plan.start, plan.end)).encode("utf-8") if k == 0 else b""
        tail = export_czml.CLOSE.encode("ascii") if k == len(plan.batches) - 1 else b""
    numbers = plan.snapshot.catalog_numbers[columns]
    return head + body + tail, tuple(int(numbers[o]) for o in omitted)


# -- the stream ------------------------------------------------------------------------------


async def export_chunks(plan: ExportPlan, run_cpu: RunCpu, slots: asyncio.Semaphore
                        ) -> AsyncIterator[ExportChunk]:
    """The document as chunks of at most :data:`CHUNK_BYTES`, batch after batch; the next
    batch is computed in the CPU pool while the current one is sent. One of ``slots`` is
    held while a batch is computed (never while the stream waits for its reader)."""
    pending: deque[asyncio.Future] = deque()

    def submit(k: int) -> asyncio.Future:
        return asyncio.ensure_future(run_cpu(render_batch, plan, k))

    try:
        for k in range(len(plan.batches)):
            async with slots:
                if k == 0:
                    pending.append(submit(0))
                text, omitted = await pending.popleft()
                if k + 1 < len(plan.batches):
                    pending.append(submit(k + 1))
            for at in range(0, max(1, len(text)), CHUNK_BYTES):
                yield ExportChunk(text[at:at + CHUNK_BYTES], omitted if at == 0 else ())
            del text
    finally:
        for future in pending:
            future.cancel()
