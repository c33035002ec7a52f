"""The threat service's settings: the sensor model, limits, windows and alert rules.

Read once at start-up from `SKYBRIDGE_THREAT_*` variables through `shared.config.EnvReader`,
so a bad value fails start-up with the variable's name. Every sensor figure is an
ASSUMPTION (no official figures for such sensors are public; open literature gives
line-of-sight noise 5-50 microradians and frame rates 1-10 Hz).

| variable (SKYBRIDGE_THREAT_...) | default | meaning |
|---|---|---|
| SENSOR_SATELLITES | (empty) | orbit catalog numbers carrying sensors; sensor ids 1..N in this order |
| SENSOR_GROUP | groups/tracking-sensors | when SENSOR_SATELLITES is empty: the orbit group whose members (by catalog number) carry the sensors (the orbit service seeds 4 satellites, ~1,000 km, 81 deg) |
| LOS_NOISE_URAD | 20 | 1-sigma LOS noise per axis (batch default), microradians |
| FRAME_RATE_HZ | 1 | frame rate |
| FIELD_OF_REGARD_DEG | 70 | half-angle of the field of regard about nadir |
| DETECTION_PROBABILITY | 0.9 | probability of reporting a visible target in a frame |
| FALSE_ALARMS_PER_FRAME | 1 | mean false alarms a sensor frame |
| MAX_BATCH | 50000 | detections in one IngestDetections message |
| MAX_FUTURE_S | 60 | how far a detection may lie after the server clock |
| REORDER_WINDOW_S | 2 | late data within this window is sorted into place |
| DETECTION_RETENTION_S | 3600 | detection batches kept this long (data time) |
| PERSIST_INTERVAL_S | 1 | tracks/alerts written at least this often during a stream |
| ALERT_INTERVAL_S | 10 | data time between impact evaluations during a stream |
| EVALUATION_MIN_GAP_S | 0.5 | wall-clock time between evaluations during a stream (matters only when data arrives faster than real time: a backlog or replay) |
| ALERT_HIGH_S / ALERT_CRITICAL_S | 900 / 300 | time-to-impact thresholds of severity |
| EPHEMERIS_STEP_S | 10 | orbit ephemeris grid step (Hermite-interpolated between) |
| EPHEMERIS_WINDOW_S | 600 | one Propagate call covers this much time (cached) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.threat.sensors import IRSensorModel
from shared.config import ConfigError, EnvReader

#: Detection times are seconds after this instant inside the tracker; earlier data is refused.
TRACKER_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ThreatSettings:
    sensor_satellites: tuple[int, ...] = ()
    sensor_group: str = "groups/tracking-sensors"
    sensor_model: IRSensorModel = field(default_factory=IRSensorModel)
    max_batch: int = 50_000
    max_future_s: float = 60.0
    reorder_window_s: float = 2.0
    detection_retention_s: float = 3600.0
    persist_interval_s: float = 1.0
    alert_interval_s: float = 10.0
    evaluation_min_gap_s: float = 0.5
    alert_high_s: float = 900.0
    alert_critical_s: float = 300.0
    ephemeris_step_s: float = 10.0
    ephemeris_window_s: float = 600.0
    epoch: datetime = TRACKER_EPOCH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ThreatSettings:
        read = EnvReader(env, prefix="SKYBRIDGE_THREAT_")
        d = cls()
        raw = read.list("SENSOR_SATELLITES", tuple(str(n) for n in d.sensor_satellites))
        try:
            sats = tuple(int(s) for s in raw)
        except ValueError:
            raise ConfigError(
                f"SKYBRIDGE_THREAT_SENSOR_SATELLITES={','.join(raw)!r} must be catalog numbers"
            ) from None
        if sats and (len(set(sats)) != len(sats) or min(sats) <= 0):
            raise ConfigError("SKYBRIDGE_THREAT_SENSOR_SATELLITES needs distinct positive "
                              "catalog numbers")
        model = IRSensorModel(
            los_noise_urad=read.float("LOS_NOISE_URAD", 20.0, minimum=0.01, maximum=10_000),
            frame_rate_hz=read.float("FRAME_RATE_HZ", 1.0, minimum=0.01, maximum=1_000),
            field_of_regard_half_angle_deg=read.float("FIELD_OF_REGARD_DEG", 70.0, minimum=1,
                                                      maximum=90),
            detection_probability=read.float("DETECTION_PROBABILITY", 0.9, minimum=0.01,
                                             maximum=1.0),
            false_alarms_per_frame=read.float("FALSE_ALARMS_PER_FRAME", 1.0, minimum=0),
        )
        critical = read.float("ALERT_CRITICAL_S", d.alert_critical_s, minimum=0)
        high = read.float("ALERT_HIGH_S", d.alert_high_s, minimum=0)
        if high < critical:
            raise ConfigError("SKYBRIDGE_THREAT_ALERT_HIGH_S must be >= ALERT_CRITICAL_S")
        return cls(
            sensor_satellites=sats,
            sensor_group=read.str("SENSOR_GROUP", d.sensor_group),
            sensor_model=model,
            max_batch=read.int("MAX_BATCH", d.max_batch, minimum=1, maximum=1_000_000),
            max_future_s=read.float("MAX_FUTURE_S", d.max_future_s, minimum=0),
            reorder_window_s=read.float("REORDER_WINDOW_S", d.reorder_window_s, minimum=0,
                                        maximum=600),
            detection_retention_s=read.float("DETECTION_RETENTION_S", d.detection_retention_s,
                                             minimum=0),
            persist_interval_s=read.float("PERSIST_INTERVAL_S", d.persist_interval_s,
                                          minimum=0.01),
            alert_interval_s=read.float("ALERT_INTERVAL_S", d.alert_interval_s, minimum=0),
            evaluation_min_gap_s=read.float("EVALUATION_MIN_GAP_S", d.evaluation_min_gap_s,
                                            minimum=0, maximum=60),
            alert_high_s=high,
            alert_critical_s=critical,
            ephemeris_step_s=read.float("EPHEMERIS_STEP_S", d.ephemeris_step_s, minimum=0.1,
                                        maximum=60),
            ephemeris_window_s=read.float("EPHEMERIS_WINDOW_S", d.ephemeris_window_s,
                                          minimum=10, maximum=86_400),
        )
