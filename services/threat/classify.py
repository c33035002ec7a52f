"""Threat classification: ballistic missile vs hypersonic glide vehicle vs unknown.

Works on a track's history (ECEF m, m/s; seconds) and its IMM model
probabilities.  Evidence used:

* **glide evidence**: time spent in sustained hypersonic flight inside the
  glide band -- altitude 25-90 km (nominal glide 40-80 km, widened for
  estimation error and the descent as the vehicle slows), Mach > 5 (speed of
  sound taken as 300 m/s) and a nearly level flight path (|gamma| < 10 deg) --
  weighted by the IMM's non-ballistic model probability there (a ballistic
  object cannot stay level at these heights: a glider needs ~5-10 m/s^2 of
  lift);
* **ballistic evidence**: an apogee far above the glide band (> 150 km) with
  post-boost flight well explained by the ballistic model;
* **boost evidence**, while neither of the above has built up: the shape of the
  ascent. A glide vehicle's booster must put it nearly level at 40-80 km, so it
  pitches over early and climbs shallowly (a depressed boost); a ballistic
  missile on an energy-efficient trajectory burns out at 25-45 deg and climbs
  steeply for most of its boost. The flight path angle of the estimated
  velocity over the ascending rows between 3 and 60 km (before the track first
  leaves the band), once ``boost_min_s`` of them exist, gives a tentative label
  (confidence ``boost_confidence``). Measured on the simulator's trajectories
  (150 ballistic, 1,000-10,000 km; 40 glide vehicles): 30 s after launch
  ballistic missiles climb at 80-85 deg and glide vehicles at 31-32 deg; 40 s
  after launch, 74-83 deg against 22-24 deg. A depressed-trajectory ballistic
  missile would read as a glide vehicle until its apogee or its lack of glide
  says otherwise: the label is tentative, and mid-course evidence replaces it;
* **level-flight evidence**, for a track first seen after the boost: hypersonic
  (Mach > 5), nearly level (|gamma| < 10 deg) flight between the glide band's
  floor and the ballistic apogee (25-150 km) for ``level_min_s``. A ballistic
  missile of 1,000-10,000 km never flies so (it crosses those heights climbing
  or re-entering steeply; its apogee is higher), while a glide vehicle does for
  most of its flight, including the unpowered arc between burnout and the glide
  when the IMM rightly calls it ballistic. On the simulator's truth (150
  ballistic missiles, 48 glide vehicles, 1 s steps): 0 s for every ballistic
  missile (lowest apogee 511 km), 1,088-1,893 s for every glide vehicle.
  Tentative (confidence ``boost_confidence``); glide or apogee evidence replaces
  it.

Labels: ``"ballistic"``, ``"hgv"``, ``"unknown"`` with a confidence in [0,1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.threat import dynamics as dyn
from services.threat.tracker.lifecycle import held

if TYPE_CHECKING:
    from services.threat.tracker import Tracker

BALLISTIC = "ballistic"
HGV = "hgv"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Classification:
    label: str
    confidence: float
    max_altitude_m: float
    glide_time_s: float
    ballistic_probability_midcourse: float


@dataclass(frozen=True)
class ClassifierConfig:
    glide_band_m: tuple[float, float] = (25e3, 90e3)
    min_mach: float = 5.0
    max_flight_path_deg: float = 10.0
    speed_of_sound_m_s: float = dyn.SPEED_OF_SOUND_M_S
    ballistic_apogee_m: float = 150e3
    glide_time_for_decision_s: float = 60.0
    glide_time_saturation_s: float = 240.0
    boost_band_m: tuple[float, float] = (3e3, 60e3)
    boost_min_s: float = 6.0
    steep_boost_deg: float = 65.0
    depressed_boost_deg: float = 50.0
    boost_confidence: float = 0.6
    level_min_s: float = 6.0


def classify_history(
    time_s: np.ndarray,
    state: np.ndarray,
    model_probability: np.ndarray,
    model_names: tuple[str, ...],
    config: ClassifierConfig | None = None,
) -> Classification:
    """Classify one track from its per-frame estimates (``state (T,6)`` ECEF)."""
    cfg = config or ClassifierConfig()
    if len(time_s) < 2:
        return Classification(UNKNOWN, 0.0, float("nan"), 0.0, float("nan"))
    r, v = state[:, :3], state[:, 3:]
    alt = dyn.altitude_m(r)
    speed = np.linalg.norm(v, axis=1)
    up = dyn.local_up(r)
    gamma = np.degrees(np.arcsin(np.clip(np.einsum("ti,ti->t", up, v) / np.maximum(speed, 1.0), -1, 1)))
    dt = np.r_[np.diff(time_s), 0.0]
    i_bal = model_names.index("ballistic") if "ballistic" in model_names else 0
    p_bal = model_probability[:, i_bal]

    # hypersonic, nearly level flight: inside the glide band it is glide evidence; up to
    # the ballistic apogee it is the level-flight evidence below
    level = ((speed >= cfg.min_mach * cfg.speed_of_sound_m_s)
             & (np.abs(gamma) <= cfg.max_flight_path_deg) & (alt >= cfg.glide_band_m[0]))
    band = level & (alt <= cfg.glide_band_m[1])
    glide_time = float(np.sum(dt * band * (1.0 - p_bal)))
    max_alt = float(np.max(alt))
    high = alt > cfg.glide_band_m[1]
    p_bal_mid = float(np.mean(p_bal[high])) if np.any(high) else float("nan")

    g_score = np.clip(glide_time / cfg.glide_time_saturation_s, 0.0, 1.0)
    if glide_time >= cfg.glide_time_for_decision_s:
        return Classification(HGV, float(0.6 + 0.4 * g_score), max_alt, glide_time, p_bal_mid)
    if max_alt >= cfg.ballistic_apogee_m:
        b = np.clip((max_alt - cfg.ballistic_apogee_m) / 150e3, 0.0, 1.0)
        conf = 0.6 + 0.2 * b + 0.2 * (p_bal_mid if np.isfinite(p_bal_mid) else 0.0)
        conf *= 1.0 - 0.5 * glide_time / cfg.glide_time_for_decision_s
        return Classification(BALLISTIC, float(np.clip(conf, 0.0, 1.0)), max_alt, glide_time, p_bal_mid)
    label = _boost_label(alt, gamma, dt, cfg)
    if label is None and float(np.sum(dt * (level & (alt <= cfg.ballistic_apogee_m)))) >= (
            cfg.level_min_s):
        label = HGV
    if label is not None:
        return Classification(label, cfg.boost_confidence, max_alt, glide_time, p_bal_mid)
    return Classification(UNKNOWN, float(1.0 - 0.5 * g_score), max_alt, glide_time, p_bal_mid)


def _boost_label(alt: np.ndarray, gamma_deg: np.ndarray, dt: np.ndarray,
                 cfg: ClassifierConfig) -> str | None:
    """Tentative label from the ascent's flight path angle (see the module docstring):
    the median angle over the ascending rows inside ``boost_band_m`` (m) before the track
    first rose above it, once they span ``boost_min_s`` (s); None when undecided."""
    above = np.flatnonzero(alt > cfg.boost_band_m[1])
    end = above[0] if above.size else alt.size
    rows = (alt[:end] >= cfg.boost_band_m[0]) & (gamma_deg[:end] > 0.0)
    if float(np.sum(dt[:end] * rows)) < cfg.boost_min_s:
        return None
    angle = float(np.median(gamma_deg[:end][rows]))
    if angle >= cfg.steep_boost_deg:
        return BALLISTIC
    if angle <= cfg.depressed_boost_deg:
        return HGV
    return None


def classify_track(tracker: Tracker, track_id: int, config: ClassifierConfig | None = None) -> Classification:
    """Classify a track of a :class:`services.threat.tracker.Tracker` by id."""
    h = tracker.history(track_id)
    keep = held(h.status)  # confirmed and coasting rows only
    return classify_history(h.time_s[keep], h.state[keep], h.model_probability[keep],
                            tracker.imm.model_names, config)
