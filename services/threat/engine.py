"""The threat service's state: one tracker per process, its persistence, alerts and streams.

- The tracker (`services.threat.tracker.Tracker`) lives in memory behind an asyncio lock;
  its CPU work runs in the service's thread pool (`kit.run_cpu`).
- Ingest of one batch: check every field (a bad batch is refused whole, before anything
  changes); sensor positions from the ephemeris (the orbit service); drop and count the
  detections that are late (at or before the last processed frame: outside the re-order
  window); store the accepted ones (`detection_batches`) with the batch's idempotency key
  in one transaction (a batch whose key the same batch already holds is a duplicate,
  skipped; another batch under a used key is REQUEST_ID_REUSED); run the tracker.
- Persistence: the live tracks and the tracker's counters are written in one transaction
  at least every `persist_interval_s` during a stream and at the end of every ingest call
  (so an answered call is durable), and at shutdown. Tentative tracks dropped before
  confirmation are deleted (false-alarm noise); confirmed tracks stay, with state DROPPED.
- Restart: the live tracks (per-model IMM state and covariance) and counters are loaded back
  and the stored detections later than the last processed frame are replayed, so the
  tracker continues where it was (only the initiator's unpaired leftovers of the last
  0.05 s are lost).
- Evaluation, every `alert_interval_s` of data time and at the end of each ingest call:
  classification of the confirmed tracks, ballistic impact and launch points
  (`services.threat.predict`), then alerts (`services.threat.alerts`): raised when an
  impact ellipse meets an asset, UPDATED when severity changes or the predicted impact
  moves by more than 1 km or 5 s, WITHDRAWN when the ellipse no longer meets it, the track
  is dropped, or the asset is removed.  During a stream, evaluations are also at least
  `evaluation_min_gap_s` of wall-clock time apart: at real time (1 s frames, an evaluation
  every 10 s) that rule never applies, but a backlog or replay at 100x real time would
  otherwise evaluate back to back, each result stale a few milliseconds later, taking a
  third of the CPU from the tracker it waits on (measured with py-spy on bench/threat.py).
  The end of every ingest call still evaluates the newest state.

Nothing here logs detections or track states: only counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.threat import alerts as alert_rules
from services.threat import batch as batch_rules
from services.threat.classify import BALLISTIC, HGV, classify_history
from services.threat.detections import Detections
from services.threat.ephemeris import SensorEphemeris
from services.threat.exports import TrackPath, thin
from services.threat.predict import estimate_launch_points, predict_impact_points
from services.threat.settings import ThreatSettings
from services.threat.store import (
    ALERT_ACTIVE,
    ALERT_UPDATED,
    ALERT_WITHDRAWN,
    CLASS_BALLISTIC,
    CLASS_HGV,
    CLASS_UNKNOWN,
    CLASS_UNSPECIFIED,
    AlertRecord,
    AssetRecord,
    Ground,
    MetaRecord,
    Store,
    ThreatClass,
    TrackRecord,
    now,
)
from services.threat.tracker import Tracker, TrackerConfig, TrackerState
from services.threat.tracker.lifecycle import DROPPED, TENTATIVE, held
from shared.errors import InvalidArgument
from shared.idempotency import Key

log = logging.getLogger("skybridge.threat")

RunCpu = Callable[..., Awaitable]
HISTORY_LIMIT = 7200  # per-track rows kept for classification (2 h at 1 Hz)
LATE = "LATE"


class Mailbox:
    """Latest value per key for one stream subscriber (a slow reader skips stale states)."""

    def __init__(self) -> None:
        self.items: dict = {}
        self.event = asyncio.Event()

    def put(self, key, value) -> None:
        self.items[key] = value
        self.event.set()

    async def take(self) -> dict:
        await self.event.wait()
        self.event.clear()
        items, self.items = self.items, {}
        return items


@dataclass
class BatchOutcome:
    accepted: int = 0
    duplicate: bool = False
    dropped: dict[str, tuple[int, str]] = field(default_factory=dict)
    frames: int = 0


@dataclass
class _Step:
    frames: int
    state: TrackerState
    x: np.ndarray  # combined (K,6)
    P: np.ndarray  # combined (K,6,6)
    dropped: list[int]


class ThreatEngine:
    def __init__(self, settings: ThreatSettings, store: Store, ephemeris: SensorEphemeris,
                 run_cpu: RunCpu, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.ephemeris = ephemeris
        self.run_cpu = run_cpu
        self.clock = clock
        self.tracker = Tracker(TrackerConfig(reorder_window_s=settings.reorder_window_s,
                                             history_limit=HISTORY_LIMIT), epoch=settings.epoch)
        self.model_names = self.tracker.imm.model_names
        self.epoch_unix = settings.epoch.timestamp()
        self.lock = asyncio.Lock()
        self._persist_lock = asyncio.Lock()
        self._eval_lock = asyncio.Lock()
        self._step: _Step | None = None
        self._dropped: dict[int, TrackRecord | None] = {}  # None: delete (never confirmed)
        self.classes: dict[int, tuple[ThreatClass, float]] = {}
        self.impacts: dict[int, Ground] = {}
        self.launches: dict[int, Ground] = {}
        self.open_alerts: dict[tuple[int, int], AlertRecord] = {}
        self._assets: list[AssetRecord] | None = None
        self.track_watchers: set[Mailbox] = set()
        self.alert_watchers: set[Mailbox] = set()
        self._last_persist = 0.0
        self._last_eval_s = -np.inf
        self._last_eval_started = -np.inf  # time.monotonic() of the last stream evaluation
        self.evaluations = 0  # evaluations run since start (a count for operators and tests)
        self._dirty = False
        self._eval_task: asyncio.Future | None = None

    # ------------------------------------------------------------------ start / stop
    async def start(self) -> None:
        """Load the stored tracks and counters, then replay unprocessed detections."""
        meta, records = await self.store.load_snapshot()
        if meta is not None:
            if meta.model_names != self.model_names:
                raise RuntimeError(f"stored tracks use IMM models {meta.model_names}, "
                                   f"the tracker {self.model_names}")
            k, m = len(records), len(self.model_names)
            from services.threat.tracker import TrackColumns

            state = TrackerState(
                self.settings.epoch, meta.next_id, meta.processed_until_s, meta.latest_seen_s,
                meta.detections_processed,
                TrackColumns.of(
                    track_id=[r.track_id for r in records],
                    status=[r.state for r in records],
                    time_s=[r.estimate_s for r in records],
                    x=np.reshape([r.model_x for r in records], (k, m, 6)),
                    P=np.reshape([r.model_P for r in records], (k, m, 6, 6)),
                    mu=np.reshape([r.mu for r in records], (k, m)),
                    hit_bits=[r.hit_bits for r in records],
                    n_opportunities=[r.opportunities for r in records],
                    n_hits=[r.hits for r in records],
                    created_s=[r.created_s for r in records],
                    last_hit_s=[r.last_hit_s for r in records],
                ),
            )
            self.tracker.restore(state)
            for r in records:
                if r.threat_class:
                    self.classes[r.track_id] = (r.threat_class, r.class_confidence)
                if r.impact:
                    self.impacts[r.track_id] = r.impact
                if r.launch:
                    self.launches[r.track_id] = r.launch
            self._step = await self.run_cpu(self._snapshot_cpu, 0, [])
            self._last_eval_s = meta.processed_until_s
        for alert in await self.store.open_alerts():
            self.open_alerts[(alert.track_id, alert.asset_id)] = alert
        rows = await self.store.batches_after(self.tracker.processed_until_s)
        if rows.shape[0]:
            dets = self._detections(rows)
            async with self.lock:
                step = await self.run_cpu(self._ingest_cpu, dets)
                self._apply(step)
        log.info("threat tracker resumed: %d live tracks, %d detections replayed",
                 len(self.tracker.export_state().track_id), rows.shape[0])

    async def stop(self) -> None:
        if self._eval_task is not None and not self._eval_task.done():
            await asyncio.shield(self._eval_task)
        await self.persist()

    # ------------------------------------------------------------------ ingest
    def now_s(self) -> float:
        return self.clock() - self.epoch_unix

    async def ingest(self, raw: batch_rules.RawBatch, key: Key | None) -> BatchOutcome:
        """One batch (see the module doc). Raises InvalidArgument for a bad batch, and
        REQUEST_ID_REUSED for a `key` (the batch's idempotency key) taken by another
        batch. A batch whose key was taken by the same batch is a duplicate: skipped."""
        known = np.arange(1, len(await self.ephemeris.catalog_numbers()) + 1)
        problems = batch_rules.check(raw, known_sensor_ids=known, min_time_s=0.0,
                                     max_time_s=self.now_s() + self.settings.max_future_s)
        if problems:
            summary = "; ".join(f"{p.field}: {p.description}" for p in problems[:3])
            raise InvalidArgument(f"the detection batch was refused whole: {summary}",
                                  reason="INVALID_DETECTION_BATCH", violations=problems)
        n = len(raw)
        outcome = BatchOutcome()
        if n == 0:
            if key is not None:  # nothing to store but the key
                async with self.lock:
                    outcome.duplicate = (await self.store.batch_seen(key)
                                         or not await self.store.add_batch(key, None))
            return outcome
        sensor_index = raw.sensor_ids - 1
        position, velocity = await self.ephemeris.sample(sensor_index, raw.time_s)
        if raw.los_ecef is not None:
            los = raw.los_ecef / np.linalg.norm(raw.los_ecef, axis=1, keepdims=True)
        else:
            los = batch_rules.los_from_angles(raw.azimuth_rad, raw.elevation_rad, position,
                                              velocity)
        noise = (np.full(n, self.settings.sensor_model.los_noise_rad) if raw.noise_rad is None
                 else raw.noise_rad)
        intensity = np.zeros(n) if raw.intensity is None else raw.intensity
        rows = np.column_stack([raw.time_s, sensor_index.astype(float), position, los, noise,
                                intensity])
        run_eval = False
        async with self.lock:
            if key is not None and await self.store.batch_seen(key):
                outcome.duplicate = True
                return outcome
            late = raw.time_s <= (self.tracker.processed_until_s
                                  + self.tracker.config.frame_tolerance_s)
            if np.any(late):
                outcome.dropped[LATE] = (int(late.sum()), (
                    f"detection time {raw.time_s[late][0]:.3f} s is not after the last "
                    f"processed frame {self.tracker.processed_until_s:.3f} s (re-order window "
                    f"{self.settings.reorder_window_s:g} s)"))
                rows = rows[~late]
            # The key is stored with the detections, and also when all came too late: a
            # retry of the batch is then a duplicate, another batch under it refused.
            if ((key is not None or rows.shape[0])
                    and not await self.store.add_batch(key, rows)):
                outcome.dropped.clear()
                outcome.duplicate = True
                return outcome
            if rows.shape[0] == 0:
                return outcome
            step = await self.run_cpu(self._ingest_cpu, self._detections(rows))
            self._apply(step)
            outcome.accepted = int(rows.shape[0])
            outcome.frames = step.frames
            run_eval = (self.tracker.processed_until_s - self._last_eval_s
                        >= self.settings.alert_interval_s)
        if (run_eval and (self._eval_task is None or self._eval_task.done())
                and time.monotonic() - self._last_eval_started
                >= self.settings.evaluation_min_gap_s):
            self._last_eval_started = time.monotonic()
            # in the background: the stream goes on while impacts are predicted (coalesced:
            # at most one evaluation runs; the next one sees the newest tracks)
            self._eval_task = asyncio.ensure_future(self._evaluate_logged())
        if time.monotonic() - self._last_persist >= self.settings.persist_interval_s:
            await self.persist()
        return outcome

    async def _evaluate_logged(self) -> None:
        try:
            await self.evaluate()
        except Exception:  # noqa: BLE001 - the next evaluation retries
            log.exception("threat: background evaluation failed")

    async def settle(self) -> None:
        """End of an ingest call: evaluate what changed, then make it durable."""
        if self._eval_task is not None:
            await asyncio.shield(self._eval_task)
        if self.tracker.processed_until_s > self._last_eval_s:
            await self.evaluate()
        await self.persist()

    def _detections(self, rows: np.ndarray) -> Detections:
        return Detections(rows[:, 0], rows[:, 1].astype(np.int32), rows[:, 2:5], rows[:, 5:8],
                          rows[:, 8], rows[:, 9], np.full(rows.shape[0], -1),
                          self.settings.epoch)

    def _ingest_cpu(self, dets: Detections) -> _Step:
        before = self.tracker.export_state().track_id if self._step is None else (
            self._step.state.track_id)
        report = self.tracker.ingest(dets)
        if report.frames_processed == 0 and self._step is not None:
            return _Step(0, self._step.state, self._step.x, self._step.P, [])
        after = self.tracker.export_state().track_id
        dropped = np.setdiff1d(before, after).tolist()
        return self._snapshot_cpu(report.frames_processed, dropped)

    def _snapshot_cpu(self, frames: int, dropped: list[int]) -> _Step:
        state = self.tracker.export_state()
        x, P = self.tracker.imm.combine(state.x, state.P, state.mu)
        return _Step(frames, state, x, P, dropped)

    def _apply(self, step: _Step) -> None:
        """Adopt a tracker step (under the lock): remember drops, notify stream watchers."""
        previous = self._step
        self._step = step
        if step.frames:
            self._dirty = True
        for track_id in step.dropped:
            record = None
            if previous is not None:
                rows = np.flatnonzero(previous.state.track_id == track_id)
                if rows.size and previous.state.status[rows[0]] != TENTATIVE:
                    record = self._record(previous, int(rows[0]))
                    record.state = DROPPED
            self._dropped[track_id] = record
            for cache in (self.classes, self.impacts, self.launches):
                cache.pop(track_id, None)
        if self.track_watchers and step.frames:
            records = [self._record(step, i) for i in range(len(step.state.track_id))]
            records += [r for t in step.dropped if (r := self._dropped.get(t)) is not None]
            for box in self.track_watchers:
                for record in records:
                    box.put(record.track_id, record)
                box.put("processed_s", self.tracker.processed_until_s)

    def _record(self, step: _Step, i: int) -> TrackRecord:
        s = step.state.tracks
        track_id = int(s.track_id[i])
        cls, confidence = self.classes.get(track_id, (CLASS_UNSPECIFIED, 0.0))
        return TrackRecord(
            track_id, int(s.status[i]), float(s.time_s[i]), float(s.created_s[i]),
            float(s.last_hit_s[i]), int(s.n_hits[i]), int(s.hit_bits[i]),
            int(s.n_opportunities[i]), step.x[i].copy(), step.P[i].copy(), s.x[i].copy(),
            s.P[i].copy(), s.mu[i].copy(), cls, confidence, self.impacts.get(track_id),
            self.launches.get(track_id))

    # ------------------------------------------------------------------ subscriptions
    @contextlib.contextmanager
    def track_subscription(self, include_tentative: bool
                           ) -> Iterator[tuple[Mailbox, list[TrackRecord], float]]:
        """Subscribe to track changes for the body: ``(mailbox, live tracks, processed
        time s)``, the tracks and time as of the subscription (nothing is missed between
        them and the first change the mailbox gets)."""
        box = Mailbox()
        self.track_watchers.add(box)
        try:
            yield box, self.live_records(include_tentative), self.processed_until_s
        finally:
            self.track_watchers.discard(box)

    @contextlib.contextmanager
    def alert_subscription(self) -> Iterator[tuple[Mailbox, list[AlertRecord]]]:
        """Subscribe to alert changes for the body: ``(mailbox, open alerts by id)`` as of
        the subscription."""
        box = Mailbox()
        self.alert_watchers.add(box)
        try:
            yield box, sorted(self.open_alerts.values(), key=lambda a: a.alert_id)
        finally:
            self.alert_watchers.discard(box)

    def live_records(self, include_tentative: bool) -> list[TrackRecord]:
        step = self._step
        if step is None:
            return []
        return [self._record(step, i) for i in range(len(step.state.track_id))
                if include_tentative or step.state.status[i] != TENTATIVE]

    @property
    def processed_until_s(self) -> float:
        return float(self.tracker.processed_until_s)

    # ------------------------------------------------------------------ exports
    def live_track_ids(self, include_tentative: bool) -> list[int]:
        """Ids of the live tracks (confirmed and coasting; tentative too if asked), by id."""
        step = self._step
        if step is None:
            return []
        keep = (np.ones(len(step.state.track_id), bool) if include_tentative
                else step.state.status != TENTATIVE)
        return sorted(int(t) for t in step.state.track_id[keep])

    async def track_paths(self, track_ids: Sequence[int], max_points: int
                          ) -> list[TrackPath | None]:
        """Each track of ``track_ids`` as it is now with its positions over its history
        (thinned to at most ``max_points``, the first and the newest kept; a dropped track
        whose history is gone has its last estimate only); None for an id that is no
        track."""
        async with self.lock:
            step = self._step
            rows = ({} if step is None else
                    {int(t): i for i, t in enumerate(step.state.track_id.tolist())})
            live = {t: self._record(step, rows[t]) for t in track_ids
                    if step is not None and t in rows}
            pending = {t: r for t in track_ids if (r := self._dropped.get(t)) is not None}
            histories = {t: self.tracker.history(t) for t in track_ids}
        out: list[TrackPath | None] = []
        for t in track_ids:
            record = live.get(t) or pending.get(t) or await self.store.get_track(t)
            if record is None:
                out.append(None)
                continue
            h = histories[t]
            time_s, position = h.time_s, h.state[:, :3]
            if not time_s.size or record.estimate_s > time_s[-1] + 1e-9:
                time_s = np.append(time_s, record.estimate_s)
                position = np.vstack([position, record.x[None, :3]])
            keep = thin(time_s.size, max(max_points, 2))
            out.append(TrackPath(record, np.asarray(time_s[keep], float),
                                 np.asarray(position[keep], float)))
        return out

    async def alerts_for_export(self, alert_ids: Sequence[int] | None, show_withdrawn: bool,
                                limit: int) -> tuple[list[AlertRecord | None],
                                                     dict[int, AssetRecord]]:
        """The alerts ``alert_ids`` (None where there is no such alert), or, when None,
        those ListAlerts lists, at most ``limit + 1`` (so a caller sees there are more);
        and the defended assets by id."""
        if alert_ids is None:
            alerts: list[AlertRecord | None] = list(
                await self.store.list_alerts(show_withdrawn, 0, limit + 1))
        else:
            alerts = [await self.store.get_alert(a) for a in alert_ids]
        return alerts, {a.asset_id: a for a in await self.assets()}

    # ------------------------------------------------------------------ persistence
    async def persist(self) -> None:
        async with self._persist_lock:
            async with self.lock:
                step, dropped = self._step, self._dropped
                self._dropped = {}
                dirty, self._dirty = self._dirty, False
                if step is None or (not dirty and not dropped):
                    self._last_persist = time.monotonic()
                    return
                records = [self._record(step, i) for i in range(len(step.state.track_id))]
            state = step.state
            final = records + [r for r in dropped.values() if r is not None]
            meta = MetaRecord(state.next_id, state.processed_until_s, state.latest_seen_s,
                              state.detections_processed, self.model_names)
            purge = (state.latest_seen_s - self.settings.detection_retention_s
                     if np.isfinite(state.latest_seen_s) else None)
            deleted = [t for t, r in dropped.items() if r is None]
            try:
                await self.store.save_snapshot(meta, final, purge, delete_ids=deleted)
            except BaseException:
                async with self.lock:
                    self._dropped = {**dropped, **self._dropped}
                    self._dirty = True
                raise
            self._last_persist = time.monotonic()
            if dropped:
                async with self.lock:
                    self.tracker.forget_history(list(dropped))

    # ------------------------------------------------------------------ evaluation
    async def assets(self) -> list[AssetRecord]:
        if self._assets is None:
            self._assets = await self.store.list_assets()
        return self._assets

    def assets_changed(self) -> None:
        self._assets = None

    async def create_asset(self, display_name: str, latitude_deg: float, longitude_deg: float,
                           radius_m: float, key, encode: Callable[[AssetRecord], bytes]
                           ) -> bytes:
        """Store a defended asset once per idempotency ``key``; evaluations see it from the
        next one on. Returns the first call's answer, ``encode(record)``."""
        answer, created = await self.store.create_asset(
            display_name, latitude_deg, longitude_deg, radius_m, key, encode)
        if created:
            self.assets_changed()
        return answer

    async def delete_asset(self, asset_id: int) -> bool:
        """Remove a defended asset and withdraw its open alerts; False when it does not
        exist."""
        if not await self.store.delete_asset(asset_id):
            return False
        await self.withdraw_asset(asset_id)
        return True

    def _classify_cpu(self, ids: np.ndarray) -> dict[int, tuple[ThreatClass, float]]:
        out = {}
        codes = {BALLISTIC: CLASS_BALLISTIC, HGV: CLASS_HGV}
        for track_id in ids:  # per confirmed track: its own history
            h = self.tracker.history(int(track_id))
            keep = held(h.status)
            if np.count_nonzero(keep) < 2:
                continue
            c = classify_history(h.time_s[keep], h.state[keep], h.model_probability[keep],
                                 self.model_names)
            out[int(track_id)] = (codes.get(c.label, CLASS_UNKNOWN), float(c.confidence))
        return out

    @staticmethod
    def _predict_cpu(x: np.ndarray, P: np.ndarray, t: np.ndarray):
        impact = predict_impact_points(x, P)
        launch = estimate_launch_points(x, P)

        def grounds(p):
            out = []
            for i in range(x.shape[0]):  # per track: a handful of floats each
                if not p.valid[i]:
                    out.append(None)
                    continue
                out.append(Ground(float(p.lat_deg[i]), float(p.lon_deg[i]),
                                  float(t[i] + p.time_to_ground_s[i]), float(p.time_sigma_s[i]),
                                  float(p.ellipse_semi_major_m[i]),
                                  float(p.ellipse_semi_minor_m[i]),
                                  float(p.ellipse_major_azimuth_deg[i])))
            return out

        return impact, grounds(impact), grounds(launch)

    async def evaluate(self) -> None:
        """Classification, impact/launch predictions and alerts for the confirmed tracks."""
        async with self._eval_lock:
            async with self.lock:
                step = self._step
                if step is None:
                    return
                self.evaluations += 1
                s = step.state
                sel = np.flatnonzero(held(s.status))
                ids = s.track_id[sel]
                classes = await self.run_cpu(self._classify_cpu, ids)
                eval_s = float(s.processed_until_s)
            x, P, t = step.x[sel], step.P[sel], s.time_s[sel]
            impact, impacts, launches = await self.run_cpu(self._predict_cpu, x, P, t)
            assets = await self.assets()
            async with self.lock:
                live = set(self._step.state.track_id.tolist())
                for i, track_id in enumerate(ids.tolist()):
                    if track_id not in live:
                        continue
                    if track_id in classes:
                        self.classes[track_id] = classes[track_id]
                    for cache, value in ((self.impacts, impacts[i]),
                                         (self.launches, launches[i])):
                        if value is None:
                            cache.pop(track_id, None)
                        else:
                            cache[track_id] = value
                self._dirty = True
                changed = self._alerts(ids, impact, impacts, assets, live, eval_s)
            self._last_eval_s = eval_s
            await self.store.save_alerts(changed)
            for alert in changed:
                if alert.state == ALERT_WITHDRAWN:
                    self.open_alerts.pop((alert.track_id, alert.asset_id), None)
                for box in self.alert_watchers:
                    box.put(alert.alert_id, alert)

    def _alerts(self, ids, impact, impacts, assets, live, eval_s) -> list[AlertRecord]:
        table = alert_rules.AssetTable(
            np.array([a.asset_id for a in assets], np.int64),
            np.array([a.lat_deg for a in assets], float),
            np.array([a.lon_deg for a in assets], float),
            np.array([a.radius_m for a in assets], float))
        valid = np.array([g is not None for g in impacts], bool)
        meets, inside = alert_rules.ellipse_meets(
            impact.point_ecef_m, impact.lat_deg, impact.lon_deg, impact.covariance_en_m2, table)
        tti = np.array([g.time_s - eval_s if g is not None else np.inf for g in impacts])
        future = valid & (tti > 0)
        meets &= future[:, None]
        sev = alert_rules.severity(tti[:, None], inside, high_s=self.settings.alert_high_s,
                                   critical_s=self.settings.alert_critical_s)
        wall = now()
        changed: list[AlertRecord] = []
        seen: set[tuple[int, int]] = set()
        for k, a in zip(*np.nonzero(meets), strict=True):  # pairs that meet (few)
            track_id, asset_id = int(ids[k]), int(table.asset_id[a])
            key = (track_id, asset_id)
            seen.add(key)
            ground, severity = impacts[k], int(sev[k, a])
            alert = self.open_alerts.get(key)
            if alert is None:
                alert = AlertRecord(0, track_id, asset_id, ALERT_ACTIVE, severity,
                                    float(tti[k]), ground, eval_s, "", wall, wall)
                self.open_alerts[key] = alert
                changed.append(alert)
                continue
            moved = _distance_m(alert.impact, ground) > 1_000.0 or abs(
                alert.impact.time_s - ground.time_s) > 5.0
            significant = severity != alert.severity or moved
            alert.time_to_impact_s, alert.evaluation_s = float(tti[k]), eval_s
            if significant:
                alert.severity, alert.impact = severity, ground
                alert.state, alert.update_time = ALERT_UPDATED, wall
            changed.append(alert)
        known_assets = set(table.asset_id.tolist())
        evaluated = {int(ids[k]) for k in np.flatnonzero(valid)}
        for key, alert in list(self.open_alerts.items()):
            if key in seen:
                continue
            track_id, asset_id = key
            reason = None
            if track_id not in live:
                reason = "TRACK_DROPPED"
            elif asset_id not in known_assets:
                reason = "ASSET_REMOVED"
            elif track_id in evaluated:
                reason = "IMPACT_ELLIPSE_CLEAR"
            if reason is not None:
                alert.state, alert.withdraw_reason, alert.update_time = (
                    ALERT_WITHDRAWN, reason, wall)
                alert.evaluation_s = eval_s
                changed.append(alert)
        return changed

    async def withdraw_asset(self, asset_id: int) -> None:
        """The asset was removed: withdraw its open alerts now."""
        self.assets_changed()
        async with self._eval_lock:
            wall = now()
            changed = []
            for key, alert in list(self.open_alerts.items()):
                if key[1] == asset_id:
                    alert.state, alert.withdraw_reason, alert.update_time = (
                        ALERT_WITHDRAWN, "ASSET_REMOVED", wall)
                    changed.append(alert)
                    self.open_alerts.pop(key)
            await self.store.save_alerts(changed)
            for alert in changed:
                for box in self.alert_watchers:
                    box.put(alert.alert_id, alert)


def _distance_m(a: Ground, b: Ground) -> float:
    from shared.geodesy import geodetic_to_ecef

    pa = geodetic_to_ecef(np.array([a.lat_deg]), np.array([a.lon_deg]), np.zeros(1))
    pb = geodetic_to_ecef(np.array([b.lat_deg]), np.array([b.lon_deg]), np.zeros(1))
    return float(np.linalg.norm(np.asarray(pa) - np.asarray(pb)))

