"""The threat service's tables and queries (SQLAlchemy Core; SQLite and PostgreSQL).

Tables (migrations/versions/):

- `tracks`: one row per track (live or dropped), written from tracker snapshots: the
  combined ECEF state and covariance (for reads), the per-model IMM state (to resume after a
  restart), life-cycle counters, classification, impact and launch predictions. Arrays are
  little-endian float64 bytes.
- `tracker_meta`: one row: the tracker's counters (next id, processed time...) written in
  the same transaction as the tracks, so a snapshot is always consistent.
- `detection_batches`: accepted detections, one row per ingested batch (columns packed as a
  (N, 10) float64 array), kept for `detection_retention_s` of data time; replayed after a
  restart for the part the tracker had not processed yet.
- `assets`, `alerts`.
- `requests`: idempotency keys, primary key (tenant, request_id), with the method, the
  request's fingerprint and the first answer (`shared.idempotency`: a key is the caller's
  tenant's). A key is claimed in the transaction of its change (a batch's detections, an
  asset), so of concurrent twins exactly one makes the change and the others replay.

Statements use bound parameters only: the SQL spans (opentelemetry-instrumentation-sqlalchemy
records `db.statement` without parameters) carry no coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import idempotency
from shared.columns import UTCDateTime
from shared.idempotency import Key
from shared.paging import decode_token, encode_token

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

tracks = sa.Table(
    "tracks", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("estimate_s", sa.Double, nullable=False),
    sa.Column("created_s", sa.Double, nullable=False),
    sa.Column("last_hit_s", sa.Double, nullable=False),
    sa.Column("hits", sa.BigInteger, nullable=False),
    sa.Column("hit_bits", sa.BigInteger, nullable=False),
    sa.Column("opportunities", sa.BigInteger, nullable=False),
    sa.Column("estimate", sa.LargeBinary, nullable=False),
    sa.Column("models", sa.LargeBinary, nullable=False),
    sa.Column("threat_class", sa.SmallInteger, nullable=False),
    sa.Column("class_confidence", sa.Double, nullable=False),
    sa.Column("impact", sa.LargeBinary, nullable=True),
    sa.Column("launch", sa.LargeBinary, nullable=True),
    sa.Column("update_time", UTCDateTime, nullable=False),
    sa.Index("ix_tracks_state", "state", "id"),
)

tracker_meta = sa.Table(
    "tracker_meta", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_id", sa.BigInteger, nullable=False),
    sa.Column("processed_until_s", sa.Double, nullable=True),
    sa.Column("latest_seen_s", sa.Double, nullable=True),
    sa.Column("detections_processed", sa.BigInteger, nullable=False),
    sa.Column("model_names", sa.String(200), nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
)

detection_batches = sa.Table(
    "detection_batches", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("min_time_s", sa.Double, nullable=False),
    sa.Column("max_time_s", sa.Double, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Index("ix_detection_batches_max_time", "max_time_s"),
)

assets = sa.Table(
    "assets", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("lat_deg", sa.Double, nullable=False),
    sa.Column("lon_deg", sa.Double, nullable=False),
    sa.Column("radius_m", sa.Double, nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=True),
    sa.Column("create_time", UTCDateTime, nullable=False),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("track_id", sa.BigInteger, nullable=False),
    sa.Column("asset_id", sa.BigInteger, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("severity", sa.SmallInteger, nullable=False),
    sa.Column("time_to_impact_s", sa.Double, nullable=False),
    sa.Column("impact", sa.LargeBinary, nullable=False),
    sa.Column("evaluation_s", sa.Double, nullable=False),
    sa.Column("withdraw_reason", sa.String(64), nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
    sa.Index("ix_alerts_state", "state", "id"),
)

class AlertState(IntEnum):
    """An alert's state as stored: the number of `skybridge.threat.v1.Alert.State` (ADR 0010)."""

    ACTIVE = 1
    UPDATED = 2
    WITHDRAWN = 3


class ThreatClass(IntEnum):
    """A track's class as stored: the number of `skybridge.threat.v1.Track.ThreatClass`."""

    UNSPECIFIED = 0
    UNKNOWN = 1
    BALLISTIC = 2
    HGV = 3


# Track states as stored are the tracker's int8 lifecycle codes
# (`services.threat.tracker.lifecycle.Status`; on the wire Track.State = stored + 1).
ALERT_ACTIVE, ALERT_UPDATED, ALERT_WITHDRAWN = (AlertState.ACTIVE, AlertState.UPDATED,
                                                AlertState.WITHDRAWN)
CLASS_UNSPECIFIED, CLASS_UNKNOWN, CLASS_BALLISTIC, CLASS_HGV = (
    ThreatClass.UNSPECIFIED, ThreatClass.UNKNOWN, ThreatClass.BALLISTIC, ThreatClass.HGV)
DETECTION_COLUMNS = 10  # time, sensor index, sensor xyz, los xyz, noise, intensity
#: How long a batch's idempotency key is kept (a retry later than that is late data anyway).
BATCH_KEY_RETENTION = timedelta(hours=48)


def now() -> datetime:
    """The wall clock as an aware UTC datetime (the time columns are `UTCDateTime`)."""
    return datetime.now(UTC)


def pack(*arrays: np.ndarray) -> bytes:
    return b"".join(np.ascontiguousarray(a, "<f8").tobytes() for a in arrays)


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, "<f8")


@dataclass
class Ground:
    """A ground prediction: lat, lon (deg), time (tracker s), time sigma (s), 95% ellipse."""

    lat_deg: float
    lon_deg: float
    time_s: float
    time_sigma_s: float
    semi_major_m: float
    semi_minor_m: float
    major_azimuth_deg: float

    def blob(self) -> bytes:
        return pack(np.array([self.lat_deg, self.lon_deg, self.time_s, self.time_sigma_s,
                              self.semi_major_m, self.semi_minor_m, self.major_azimuth_deg]))

    @classmethod
    def from_blob(cls, blob: bytes | None) -> Ground | None:
        if not blob:
            return None
        return cls(*(float(v) for v in unpack(blob)))


@dataclass
class TrackRecord:
    """One track as stored and served."""

    track_id: int
    state: int  # lifecycle code: 0 tentative, 1 confirmed, 2 coasting, 3 dropped
    estimate_s: float
    created_s: float
    last_hit_s: float
    hits: int
    hit_bits: int
    opportunities: int
    x: np.ndarray  # (6,)
    P: np.ndarray  # (6,6)
    model_x: np.ndarray  # (M,6)
    model_P: np.ndarray  # (M,6,6)
    mu: np.ndarray  # (M,)
    threat_class: ThreatClass = ThreatClass.UNSPECIFIED
    class_confidence: float = 0.0
    impact: Ground | None = None
    launch: Ground | None = None

    def row(self, when: datetime) -> dict:
        return {
            "id": self.track_id, "state": self.state, "estimate_s": self.estimate_s,
            "created_s": self.created_s, "last_hit_s": self.last_hit_s, "hits": self.hits,
            "hit_bits": self.hit_bits, "opportunities": self.opportunities,
            "estimate": pack(self.x, self.P), "models": pack(self.mu, self.model_x, self.model_P),
            "threat_class": self.threat_class, "class_confidence": self.class_confidence,
            "impact": self.impact.blob() if self.impact else None,
            "launch": self.launch.blob() if self.launch else None, "update_time": when,
        }

    @classmethod
    def from_row(cls, row, n_models: int) -> TrackRecord:
        est = unpack(row.estimate)
        models = unpack(row.models)
        m = n_models
        return cls(
            int(row.id), int(row.state), float(row.estimate_s), float(row.created_s),
            float(row.last_hit_s), int(row.hits), int(row.hit_bits), int(row.opportunities),
            est[:6].copy(), est[6:42].reshape(6, 6).copy(),
            models[m:m + 6 * m].reshape(m, 6).copy(),
            models[7 * m:7 * m + 36 * m].reshape(m, 6, 6).copy(), models[:m].copy(),
            ThreatClass(int(row.threat_class)), float(row.class_confidence), Ground.from_blob(row.impact),
            Ground.from_blob(row.launch),
        )


@dataclass
class MetaRecord:
    next_id: int
    processed_until_s: float
    latest_seen_s: float
    detections_processed: int
    model_names: tuple[str, ...]


@dataclass
class AssetRecord:
    asset_id: int
    display_name: str
    lat_deg: float
    lon_deg: float
    radius_m: float
    create_time: datetime


@dataclass
class AlertRecord:
    alert_id: int
    track_id: int
    asset_id: int
    state: AlertState
    severity: int
    time_to_impact_s: float
    impact: Ground
    evaluation_s: float
    withdraw_reason: str
    create_time: datetime
    update_time: datetime

    def row(self) -> dict:
        return {"track_id": self.track_id, "asset_id": self.asset_id, "state": self.state,
                "severity": self.severity, "time_to_impact_s": self.time_to_impact_s,
                "impact": self.impact.blob(), "evaluation_s": self.evaluation_s,
                "withdraw_reason": self.withdraw_reason, "create_time": self.create_time,
                "update_time": self.update_time}

    @classmethod
    def from_row(cls, row) -> AlertRecord:
        return cls(int(row.id), int(row.track_id), int(row.asset_id), AlertState(int(row.state)),
                   int(row.severity), float(row.time_to_impact_s), Ground.from_blob(row.impact),
                   float(row.evaluation_s), row.withdraw_reason, row.create_time,
                   row.update_time)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# --------------------------------------------------------------------------- page tokens


def encode_page_token(after_id: int, fingerprint: str) -> str:
    """A page token after row ``after_id`` of the list whose filters hash to
    ``fingerprint`` (``shared.paging``)."""
    return encode_token(fingerprint, [after_id])


def decode_page_token(token: str, fingerprint: str) -> int:
    """The row id a page token continues after (0 for the first page); a token from another
    list or filters is INVALID_ARGUMENT naming ``page_token``."""
    key = decode_token(token, fingerprint, kinds=(int,))
    return 0 if key is None else key[0]


class Store:
    """Queries of the threat service."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], n_models: int) -> None:
        self.sessions = sessions
        self.n_models = n_models

    # ------------------------------------------------------------------ tracker snapshot
    async def save_snapshot(self, meta: MetaRecord, records: Sequence[TrackRecord],
                            purge_before_s: float | None, delete_ids: Sequence[int] = ()
                            ) -> None:
        """Write changed tracks (and delete `delete_ids`) and the counters in one
        transaction; purge detection batches older than `purge_before_s`, and batch
        idempotency keys older than BATCH_KEY_RETENTION (wall clock)."""
        when = now()
        async with self.sessions.begin() as session:
            ids = [r.track_id for r in records] + [int(i) for i in delete_ids]
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                await session.execute(sa.delete(tracks).where(tracks.c.id.in_(part)))
            if records:
                await session.execute(sa.insert(tracks), [r.row(when) for r in records])
            values = {"next_id": meta.next_id,
                      "processed_until_s": _finite_or_none(meta.processed_until_s),
                      "latest_seen_s": _finite_or_none(meta.latest_seen_s),
                      "detections_processed": meta.detections_processed,
                      "model_names": ",".join(meta.model_names), "update_time": when}
            updated = await session.execute(
                sa.update(tracker_meta).where(tracker_meta.c.id == 1).values(**values))
            if updated.rowcount == 0:
                await session.execute(sa.insert(tracker_meta).values(id=1, **values))
            if purge_before_s is not None:
                await session.execute(sa.delete(detection_batches).where(
                    detection_batches.c.max_time_s < purge_before_s))
                await session.execute(sa.delete(requests).where(
                    requests.c.method == "IngestDetections",
                    requests.c.create_time < when - BATCH_KEY_RETENTION))

    async def load_snapshot(self) -> tuple[MetaRecord | None, list[TrackRecord]]:
        async with self.sessions() as session:
            meta_row = (await session.execute(sa.select(tracker_meta))).first()
            if meta_row is None:
                return None, []
            rows = (await session.execute(
                sa.select(tracks).where(tracks.c.state != 3).order_by(tracks.c.id))).all()
        meta = MetaRecord(
            int(meta_row.next_id),
            -np.inf if meta_row.processed_until_s is None else float(meta_row.processed_until_s),
            -np.inf if meta_row.latest_seen_s is None else float(meta_row.latest_seen_s),
            int(meta_row.detections_processed), tuple(meta_row.model_names.split(",")))
        return meta, [TrackRecord.from_row(r, self.n_models) for r in rows]

    # ------------------------------------------------------------------ tracks
    async def get_track(self, track_id: int) -> TrackRecord | None:
        async with self.sessions() as session:
            row = (await session.execute(
                sa.select(tracks).where(tracks.c.id == track_id))).first()
        return None if row is None else TrackRecord.from_row(row, self.n_models)

    async def list_tracks(self, states: Iterable[int], after_id: int, limit: int
                          ) -> list[TrackRecord]:
        query = (sa.select(tracks).where(tracks.c.id > after_id,
                                         tracks.c.state.in_(list(states)))
                 .order_by(tracks.c.id).limit(limit))
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        return [TrackRecord.from_row(r, self.n_models) for r in rows]

    # ------------------------------------------------------------------ detections
    async def add_batch(self, key: Key | None, payload: np.ndarray | None) -> bool:
        """Store accepted detections ``(N, 10)`` (see DETECTION_COLUMNS; none: only the key)
        with the batch's idempotency key in one transaction. False, storing nothing, when
        the key is taken by the same batch (a twin, maybe on another stream or replica);
        REQUEST_ID_REUSED when taken by another."""
        async with self.sessions.begin() as session:
            if key is not None and await idempotency.claim(
                    session, requests, key, response=b"", create_time=now()) is not None:
                return False
            if payload is not None and payload.shape[0]:
                await session.execute(sa.insert(detection_batches).values(
                    min_time_s=float(payload[:, 0].min()),
                    max_time_s=float(payload[:, 0].max()), count=int(payload.shape[0]),
                    payload=pack(payload), create_time=now()))
        return True

    async def batch_seen(self, key: Key) -> bool:
        """True when this batch was ingested under its key already (REQUEST_ID_REUSED when
        the key was used for another request). A read before any work; the race between
        twins is settled in :meth:`add_batch`."""
        return await self._replay(key) is not None

    async def batches_after(self, time_s: float) -> np.ndarray:
        """Stored detections later than ``time_s``, ``(N, 10)``."""
        query = sa.select(detection_batches.c.payload).order_by(detection_batches.c.id)
        if np.isfinite(time_s):
            query = query.where(detection_batches.c.max_time_s > time_s)
        async with self.sessions() as session:
            blobs = (await session.execute(query)).scalars().all()
        if not blobs:
            return np.zeros((0, DETECTION_COLUMNS))
        rows = np.concatenate([unpack(b).reshape(-1, DETECTION_COLUMNS) for b in blobs])
        return rows[rows[:, 0] > time_s]

    async def count_batches(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(
                sa.select(sa.func.count()).select_from(detection_batches)))

    # ------------------------------------------------------------------ assets
    async def create_asset(self, display_name: str, lat: float, lon: float, radius_m: float,
                           key: Key | None, encode: Callable[[AssetRecord], bytes]
                           ) -> tuple[bytes, bool]:
        """Insert an asset with its idempotency key in one transaction; returns (answer,
        created): the encoded answer of the key's first call (a replay, even after the
        asset was deleted: created False), or of this one."""
        async with self.sessions.begin() as session:
            if key is not None:
                first = await idempotency.claim(session, requests, key, response=None,
                                                create_time=now())
                if first is not None:
                    return first.response, False
            created = now()
            result = await session.execute(sa.insert(assets).values(
                display_name=display_name, lat_deg=lat, lon_deg=lon, radius_m=radius_m,
                create_time=created).returning(assets.c.id))
            answer = encode(AssetRecord(int(result.scalar_one()), display_name, lat, lon,
                                        radius_m, created))
            if key is not None:
                await session.execute(requests.update().where(
                    requests.c.tenant == key.tenant,
                    requests.c.request_id == key.request_id).values(response=answer))
        return answer, True

    async def _replay(self, key: Key) -> bytes | None:
        """The stored answer of `key`'s first call, or None when the key is unused."""
        async with self.sessions() as session:
            row = (await session.execute(sa.select(requests).where(
                requests.c.tenant == key.tenant,
                requests.c.request_id == key.request_id))).first()
        return None if row is None else idempotency.replayed(row, key).response

    async def list_assets(self, after_id: int = 0, limit: int | None = None
                          ) -> list[AssetRecord]:
        query = sa.select(assets).where(assets.c.id > after_id).order_by(assets.c.id)
        if limit is not None:
            query = query.limit(limit)
        async with self.sessions() as session:
            return [_asset(r) for r in (await session.execute(query)).all()]

    async def delete_asset(self, asset_id: int) -> bool:
        async with self.sessions.begin() as session:
            result = await session.execute(sa.delete(assets).where(assets.c.id == asset_id))
        return result.rowcount > 0

    # ------------------------------------------------------------------ alerts
    async def save_alerts(self, changed: Sequence[AlertRecord]) -> None:
        """Insert new alerts (alert_id 0: the id is assigned here) and update the others."""
        if not changed:
            return
        async with self.sessions.begin() as session:
            for alert in changed:  # only alerts that changed at this evaluation
                if alert.alert_id == 0:
                    result = await session.execute(
                        sa.insert(alerts).values(**alert.row()).returning(alerts.c.id))
                    alert.alert_id = int(result.scalar_one())
                else:
                    await session.execute(sa.update(alerts).where(
                        alerts.c.id == alert.alert_id).values(**alert.row()))

    async def open_alerts(self) -> list[AlertRecord]:
        async with self.sessions() as session:
            rows = (await session.execute(sa.select(alerts).where(
                alerts.c.state != ALERT_WITHDRAWN).order_by(alerts.c.id))).all()
        return [AlertRecord.from_row(r) for r in rows]

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        async with self.sessions() as session:
            row = (await session.execute(
                sa.select(alerts).where(alerts.c.id == alert_id))).first()
        return None if row is None else AlertRecord.from_row(row)

    async def list_alerts(self, show_withdrawn: bool, after_id: int, limit: int
                          ) -> list[AlertRecord]:
        query = sa.select(alerts).where(alerts.c.id > after_id)
        if not show_withdrawn:
            query = query.where(alerts.c.state != ALERT_WITHDRAWN)
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(alerts.c.id).limit(limit))).all()
        return [AlertRecord.from_row(r) for r in rows]


def _asset(row) -> AssetRecord:
    return AssetRecord(int(row.id), row.display_name, float(row.lat_deg), float(row.lon_deg),
                       float(row.radius_m), row.create_time)
