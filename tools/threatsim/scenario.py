"""Seeded scenario simulator: ballistic missiles, hypersonic glide vehicles,
false alarms and detections from moving space-based IR sensors.

Frames and units: ECEF (WGS84) metres and m/s; times are float seconds from
the scenario ``epoch`` (UTC datetime).  The simulator's inertial frame is
aligned with ECEF at ``t = 0`` (Earth rotation angle ``w_E t``); sensor
satellites fly Keplerian circular orbits in that frame.

Everything random is drawn from one ``numpy.random.Generator`` seeded by the
scenario seed, in a fixed order, so a seed reproduces the scenario exactly.

Target models (3-DOF point mass, see :mod:`services.threat.dynamics`):

* **Ballistic missile**: powered ascent with thrust acceleration
  ``a0 / (1 - f t / T_burn)`` (constant mass flow, propellant fraction ``f``)
  along a pitch programme (vertical rise, then the thrust elevation decreases
  linearly to a burnout value, in the launch plane), then free flight under
  J2 gravity and exponential-atmosphere drag (ballistic coefficient) to impact.
  ``a0`` is tuned per missile (vectorised batch of candidates) so that the
  ground range matches the requested 1,000-10,000 km.
* **Hypersonic glide vehicle (HGV)**: a depressed boost, then an unpowered
  glide with lift, drag and bank (3-DOF): an altitude-hold guidance law
  commands lift (capped at ``L/D_max * drag``, bank reversal allowed) to hold
  40-80 km; scheduled manoeuvres are a pull-up (altitude command step) and a
  lateral turn (bank angle); below ~Mach 5.3 it dives unpowered to the ground.

Sensors: all sensors take frames synchronously at ``k / frame_rate`` seconds
(documented simplification; the tracker itself does not require it).  Targets that one
sensor sees within ``resolution_urad`` of each other in a frame are not resolved: they
give one detection at their intensity-weighted centroid, labelled with the brighter one
(:func:`services.threat.sensors.merge_unresolved`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from services.threat import dynamics as dyn
from services.threat.detections import DEFAULT_EPOCH, Detections
from services.threat.sensors import (
    IRSensorModel,
    irradiance,
    los_unit,
    merge_unresolved,
    perturb_los,
    random_los_in_field_of_regard,
    visible,
)
from shared.geodesy import enu_rotation, geodetic_to_ecef

HGV_THETA_BO = -7.0
HGV_EXP = 0.33
PHASE_BOOST = 0
PHASE_MIDCOURSE = 1
PHASE_GLIDE = 2
PHASE_TERMINAL = 3

KIND_BALLISTIC = "ballistic"
KIND_HGV = "hgv"

# Radiant intensities (W/sr) per phase: ASSUMED orders of magnitude only.
RADIANT_INTENSITY_W_SR = {
    PHASE_BOOST: 1e6,
    PHASE_MIDCOURSE: 3e2,
    PHASE_GLIDE: 2e4,
    PHASE_TERMINAL: 5e4,
}


# --------------------------------------------------------------------------- sensors


@dataclass(frozen=True)
class CircularConstellation:
    """Sensor satellites on Keplerian circular orbits (simulator only).

    ``raan_deg`` and ``arg_lat0_deg`` (argument of latitude at ``t=0``) are
    per satellite; all share altitude and inclination.  Inertial frame = ECEF
    at ``t=0``.
    """

    raan_deg: np.ndarray
    arg_lat0_deg: np.ndarray
    altitude_m: float = 1_000e3
    inclination_deg: float = 81.0

    @property
    def n_sats(self) -> int:
        return int(np.size(self.raan_deg))

    @property
    def mean_motion_rad_s(self) -> float:
        a = dyn.R_EQ_M + self.altitude_m
        return float(np.sqrt(dyn.GM_M3_S2 / a**3))

    def positions_ecef(self, t_s: np.ndarray) -> np.ndarray:
        """Sensor positions ``(T, S, 3)`` ECEF metres at times ``t_s`` ``(T,)``."""
        t = np.atleast_1d(np.asarray(t_s, float))[:, None]
        a = dyn.R_EQ_M + self.altitude_m
        om = np.radians(np.asarray(self.raan_deg, float))[None, :]
        inc = np.radians(self.inclination_deg)
        u = np.radians(np.asarray(self.arg_lat0_deg, float))[None, :] + self.mean_motion_rad_s * t
        x = a * (np.cos(om) * np.cos(u) - np.sin(om) * np.sin(u) * np.cos(inc))
        y = a * (np.sin(om) * np.cos(u) + np.cos(om) * np.sin(u) * np.cos(inc))
        z = a * np.sin(u) * np.sin(inc) * np.ones_like(om)
        th = dyn.OMEGA_E_RAD_S * t  # ECI -> ECEF rotation angle
        xe = np.cos(th) * x + np.sin(th) * y
        ye = -np.sin(th) * x + np.cos(th) * y
        return np.stack([xe, ye, z], axis=-1)

    @classmethod
    def overlooking(
        cls,
        lat_deg: float,
        lon_deg: float,
        t_s: float,
        n_planes: int = 2,
        sats_per_plane: int = 2,
        plane_spacing_deg: float = 14.0,
        sat_spacing_deg: float = 16.0,
        altitude_m: float = 1_000e3,
        inclination_deg: float = 81.0,
    ) -> CircularConstellation:
        """A small "train" whose centre passes over (lat, lon) ascending at ``t_s``.

        Default: 4 satellites (2 planes x 2), ~1,000 km, 81 deg inclination.
        """
        inc = np.radians(inclination_deg)
        lat = np.radians(np.clip(lat_deg, -inclination_deg + 0.1, inclination_deg - 0.1))
        u_c = np.arcsin(np.sin(lat) / np.sin(inc))
        lam_rel = np.arctan2(np.cos(inc) * np.sin(u_c), np.cos(u_c))
        n = float(np.sqrt(dyn.GM_M3_S2 / (dyn.R_EQ_M + altitude_m) ** 3))
        raan_c = np.radians(lon_deg) + dyn.OMEGA_E_RAD_S * t_s - lam_rel
        u0_c = u_c - n * t_s
        p = np.arange(n_planes) - (n_planes - 1) / 2
        q = np.arange(sats_per_plane) - (sats_per_plane - 1) / 2
        pp, qq = np.meshgrid(p, q, indexing="ij")
        # stagger planes so the satellites are not abreast
        raan = np.degrees(raan_c) + pp.ravel() * plane_spacing_deg
        u0 = np.degrees(u0_c) + qq.ravel() * sat_spacing_deg + pp.ravel() * sat_spacing_deg / 2
        return cls(raan, u0, altitude_m, inclination_deg)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class BallisticSpec:
    """One ballistic missile.  Angles in degrees, range in km, time in s."""

    launch_lat_deg: float
    launch_lon_deg: float
    azimuth_deg: float
    range_km: float
    launch_time_s: float = 0.0
    beta_kg_m2: float = 6_000.0
    """Re-entry vehicle ballistic coefficient m/(Cd A), kg/m^2."""


@dataclass(frozen=True)
class GlideSpec:
    """One hypersonic glide vehicle.  Angles in degrees, heights in km."""

    launch_lat_deg: float
    launch_lon_deg: float
    azimuth_deg: float
    launch_time_s: float = 0.0
    glide_altitude_km: float = 55.0
    boost_delta_v_m_s: float = 6_500.0
    """Ideal boost delta-v; sets the glide Mach number (~Mach 12-20)."""
    lift_to_drag: float = 2.6
    beta_kg_m2: float = 5_000.0
    pullup_start_s: float = 250.0
    """Start of the pull-up, seconds after launch (inf: none)."""
    pullup_duration_s: float = 120.0
    pullup_dh_km: float = 12.0
    turn_start_s: float = 400.0
    """Start of the lateral turn, seconds after launch (inf: none)."""
    turn_duration_s: float = 90.0
    turn_bank_deg: float = 40.0
    end_speed_m_s: float = 1_600.0
    """Below this speed (~Mach 5.3) the glide ends with an unpowered dive."""


@dataclass(frozen=True)
class TargetTruth:
    """Truth trajectory of one target (ECEF m, m/s; seconds from epoch)."""

    truth_id: int
    kind: str
    time: np.ndarray  # (T,)
    state: np.ndarray  # (T, 6)
    phase: np.ndarray  # (T,) int8: PHASE_*
    launch_ecef_m: np.ndarray  # (3,)
    impact_ecef_m: np.ndarray  # (3,)
    impact_time_s: float

    def state_at(self, t_s: np.ndarray) -> np.ndarray:
        """Cubic-Hermite interpolated states ``(len(t), 6)``; NaN outside life."""
        return hermite_interpolate(self.time, self.state, np.atleast_1d(np.asarray(t_s, float)))

    def phase_at(self, t_s: np.ndarray) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t_s, float))
        i = np.clip(np.searchsorted(self.time, t, side="right") - 1, 0, len(self.time) - 1)
        out = self.phase[i].astype(np.int16)
        out[(t < self.time[0]) | (t > self.time[-1])] = -1
        return out


def hermite_interpolate(t: np.ndarray, x: np.ndarray, tq: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of position using velocity (``x`` (T,6)).

    Velocity is interpolated linearly.  Returns NaN outside ``[t0, t_end]``.
    """
    out = np.full((tq.shape[0], 6), np.nan)
    ok = (tq >= t[0]) & (tq <= t[-1])
    if not np.any(ok) or len(t) < 2:
        if len(t) == 1:
            out[tq == t[0]] = x[0]
        return out
    q = tq[ok]
    i = np.clip(np.searchsorted(t, q, side="right") - 1, 0, len(t) - 2)
    h = (t[i + 1] - t[i])[:, None]
    s = (q - t[i])[:, None] / h
    p0, p1 = x[i, :3], x[i + 1, :3]
    v0, v1 = x[i, 3:], x[i + 1, 3:]
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    out[ok, :3] = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1
    out[ok, 3:] = (1 - s) * v0 + s * v1
    return out


@dataclass
class _FlightParams:
    """Per-member (B,) arrays for the vectorised powered/glide flight model."""

    r0: np.ndarray  # (B,3) launch position
    h0: np.ndarray  # (B,3) launch-plane horizontal unit vector
    a0: np.ndarray  # initial thrust acceleration, m/s^2
    burn_s: np.ndarray
    frac: np.ndarray  # propellant fraction
    t_vert_s: np.ndarray
    theta_bo_deg: np.ndarray  # thrust elevation at burnout
    pitch_exp: np.ndarray  # elevation follows 90 + (theta_bo - 90) * s**pitch_exp
    beta_boost: np.ndarray
    beta_post: np.ndarray
    glide: np.ndarray  # bool
    h_cmd_m: np.ndarray
    ld_max: np.ndarray
    pullup_start: np.ndarray
    pullup_dur: np.ndarray
    pullup_dh_m: np.ndarray
    turn_start: np.ndarray
    turn_dur: np.ndarray
    turn_bank_rad: np.ndarray
    end_speed: np.ndarray

    def take(self, idx: np.ndarray) -> _FlightParams:
        return _FlightParams(**{k: v[idx] for k, v in self.__dict__.items()})


def _norm(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _extra_accel(t: float, x: np.ndarray, p: _FlightParams, gliding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thrust + lift acceleration (B,3) and the ballistic coefficient (B,)."""
    r, v = x[:, :3], x[:, 3:]
    up = _norm(r)
    boosting = t < p.burn_s
    tb = np.minimum(t, p.burn_s)
    a_mag = np.where(boosting, p.a0 / (1.0 - p.frac * tb / p.burn_s), 0.0)
    frac_pitch = np.clip((t - p.t_vert_s) / (p.burn_s - p.t_vert_s), 0.0, 1.0)
    theta = np.radians(90.0 + (p.theta_bo_deg - 90.0) * frac_pitch**p.pitch_exp)
    horiz = _norm(p.h0 - np.einsum("bi,bi->b", p.h0, up)[:, None] * up)
    acc = a_mag[:, None] * (np.sin(theta)[:, None] * up + np.cos(theta)[:, None] * horiz)
    beta = np.where(boosting, p.beta_boost, p.beta_post)

    if np.any(gliding):
        speed = np.linalg.norm(v, axis=1)
        vhat = v / np.maximum(speed, 1e-3)[:, None]
        alt = dyn.altitude_m(r)
        rn = np.linalg.norm(r, axis=1)
        drag = 0.5 * dyn.atmosphere_density_kg_m3(alt) * speed**2 / p.beta_post
        l_up = _norm(up - np.einsum("bi,bi->b", up, vhat)[:, None] * vhat)
        l_lat = np.cross(vhat, l_up)
        hdot = np.einsum("bi,bi->b", up, v)
        vh2 = np.maximum(speed**2 - hdot**2, 0.0)
        g = dyn.GM_M3_S2 / rn**2
        in_pull = (t >= p.pullup_start) & (t < p.pullup_start + p.pullup_dur)
        in_turn = (t >= p.turn_start) & (t < p.turn_start + p.turn_dur)
        h_cmd = p.h_cmd_m + np.where(in_pull, p.pullup_dh_m, 0.0)
        bank = np.where(in_turn, p.turn_bank_rad, 0.0)
        wn = 0.025
        a_req = (g - vh2 / rn) + wn**2 * (h_cmd - alt) - 2.0 * wn * hdot
        lmax = p.ld_max * drag
        lift = np.clip(a_req / np.cos(bank), -lmax, lmax)
        lift = np.where(gliding, lift, 0.0)
        acc = acc + lift[:, None] * (np.cos(bank)[:, None] * l_up + np.sin(bank)[:, None] * l_lat)
    return acc, beta


def _fly(p: _FlightParams, dt_s: float, max_time_s: float, record: bool) -> dict[str, np.ndarray]:
    """Integrate a batch of vehicles from launch to impact (RK4, step ``dt_s``).

    Returns ``t (N,)``, ``x (N,B,6)``, ``phase (N,B)``, ``alive (N,B)``,
    ``impact (B,3)``, ``t_impact (B,)`` (times relative to launch).  When
    ``record`` is false only the impact outputs are filled.
    """
    b = p.r0.shape[0]
    x = np.concatenate([p.r0, np.zeros((b, 3))], axis=1)
    alive = np.ones(b, bool)
    gliding = np.zeros(b, bool)
    diving = np.zeros(b, bool)
    impact = np.full((b, 3), np.nan)
    t_imp = np.full(b, np.nan)
    ts, xs, phs, als = [], [], [], []
    alt = dyn.altitude_m(x[:, :3])
    t = 0.0

    def deriv(tt: float, xx: np.ndarray) -> np.ndarray:
        acc, beta = _extra_accel(tt, xx, p, gliding & ~diving)
        return dyn.ecef_derivative(xx, beta, acc)

    def phase_now() -> np.ndarray:
        ph = np.where(t < p.burn_s, PHASE_BOOST, PHASE_MIDCOURSE)
        ph = np.where(gliding & ~diving, PHASE_GLIDE, ph)
        descending = np.einsum("bi,bi->b", x[:, :3], x[:, 3:]) < 0
        term = (t >= p.burn_s) & ((~p.glide & descending & (alt < 100e3)) | diving)
        return np.where(term, PHASE_TERMINAL, ph).astype(np.int8)

    while np.any(alive) and t <= max_time_s:
        if record:
            ts.append(t)
            xs.append(x.copy())
            phs.append(phase_now())
            als.append(alive.copy())
        k1 = deriv(t, x)
        k2 = deriv(t + dt_s / 2, x + dt_s / 2 * k1)
        k3 = deriv(t + dt_s / 2, x + dt_s / 2 * k2)
        k4 = deriv(t + dt_s, x + dt_s * k3)
        xn = x + dt_s / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        an = dyn.altitude_m(xn[:, :3])
        hit = alive & (an <= 0.0) & (t > 5.0)
        if np.any(hit):
            f = (alt[hit] / (alt[hit] - an[hit]))[:, None]
            impact[hit] = x[hit, :3] + f * (xn[hit, :3] - x[hit, :3])
            t_imp[hit] = t + f[:, 0] * dt_s
            alive &= ~hit
        xn[~alive] = x[~alive]
        x, alt = xn, np.where(alive, an, alt)
        t += dt_s
        # glide latch: after burnout, descending near the commanded altitude
        hdot = np.einsum("bi,bi->b", _norm(x[:, :3]), x[:, 3:])
        gliding |= p.glide & (t >= p.burn_s) & (hdot < 0) & (alt < p.h_cmd_m + 15e3)
        diving |= gliding & (np.linalg.norm(x[:, 3:], axis=1) < p.end_speed)
    out = {"impact": impact, "t_impact": t_imp}
    if record:
        out.update(t=np.array(ts), x=np.array(xs), phase=np.array(phs), alive=np.array(als))
    return out


def _launch_frame(lat: np.ndarray, lon: np.ndarray, az: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r0 = geodetic_to_ecef(lat, lon, np.zeros_like(lat))
    enu = enu_rotation(lat, lon)  # rows east, north, up
    azr = np.radians(az)
    h0 = np.sin(azr)[:, None] * enu[:, 0] + np.cos(azr)[:, None] * enu[:, 1]
    return np.atleast_2d(r0), np.atleast_2d(h0)


def _ground_range_m(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    c = np.einsum("bi,bi->b", _norm(r0), _norm(r1))
    return 6_371_008.8 * np.arccos(np.clip(c, -1, 1))


def _ballistic_params(specs: list[BallisticSpec], a0: np.ndarray) -> _FlightParams:
    lat = np.array([s.launch_lat_deg for s in specs], float)
    lon = np.array([s.launch_lon_deg for s in specs], float)
    az = np.array([s.azimuth_deg for s in specs], float)
    rng_km = np.array([s.range_km for s in specs], float)
    r0, h0 = _launch_frame(lat, lon, az)
    b = len(specs)
    u = np.clip((rng_km - 1000.0) / 9000.0, 0.0, 1.0)
    inf = np.full(b, np.inf)
    return _FlightParams(
        r0=r0, h0=h0, a0=np.asarray(a0, float),
        burn_s=np.round(70.0 + 110.0 * u), frac=np.full(b, 0.75), t_vert_s=np.full(b, 8.0),
        theta_bo_deg=40.0 - 15.0 * u, pitch_exp=np.ones(b), beta_boost=np.full(b, 5e4),
        beta_post=np.array([s.beta_kg_m2 for s in specs], float), glide=np.zeros(b, bool),
        h_cmd_m=np.zeros(b), ld_max=np.zeros(b), pullup_start=inf, pullup_dur=np.zeros(b),
        pullup_dh_m=np.zeros(b), turn_start=inf, turn_dur=np.zeros(b), turn_bank_rad=np.zeros(b),
        end_speed=np.zeros(b),
    )


def _ideal_a0(delta_v: np.ndarray, burn_s: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Initial thrust acceleration giving ideal delta-v for the mass-flow model."""
    return delta_v * frac / (burn_s * np.log(1.0 / (1.0 - frac)))


def _tune_ballistic(specs: list[BallisticSpec], n_cand: int = 12, rounds: int = 2) -> np.ndarray:
    """Choose a0 per missile so the ground range matches: a vectorised bracketing
    search (all missiles x candidates fly in one batch per round)."""
    nb = len(specs)
    base = _ballistic_params(specs, np.ones(nb))
    target = np.array([s.range_km for s in specs]) * 1e3
    lo = np.full(nb, 2_500.0)
    hi = np.full(nb, 10_500.0)
    idx = np.repeat(np.arange(nb), n_cand)
    p = base.take(idx)
    for _ in range(rounds):
        dv = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, n_cand)[None, :]  # (nb,n)
        p.a0 = _ideal_a0(dv.ravel(), p.burn_s, p.frac)
        res = _fly(p, 2.0, 6_000.0, record=False)
        r = _ground_range_m(p.r0, res["impact"]).reshape(nb, n_cand)
        r = np.where(np.isfinite(r), r, np.inf)
        above = r >= target[:, None]
        j = np.where(above.any(axis=1), np.argmax(above, axis=1), n_cand - 1)
        j = np.clip(j, 1, n_cand - 1)
        rows = np.arange(nb)
        lo, hi = dv[rows, j - 1], dv[rows, j]
        r_lo, r_hi = r[rows, j - 1], r[rows, j]
    w = np.where(np.isfinite(r_hi) & (r_hi > r_lo), (target - r_lo) / np.where(r_hi > r_lo, r_hi - r_lo, 1.0), 0.5)
    dv_best = lo + np.clip(w, 0.0, 1.0) * (hi - lo)
    return _ideal_a0(dv_best, base.burn_s, base.frac)


def _glide_params(specs: list[GlideSpec]) -> _FlightParams:
    lat = np.array([s.launch_lat_deg for s in specs], float)
    lon = np.array([s.launch_lon_deg for s in specs], float)
    az = np.array([s.azimuth_deg for s in specs], float)
    r0, h0 = _launch_frame(lat, lon, az)
    b = len(specs)
    burn = np.full(b, 70.0)
    frac = np.full(b, 0.75)
    g = lambda name: np.array([getattr(s, name) for s in specs], float)  # noqa: E731
    return _FlightParams(
        r0=r0, h0=h0, a0=_ideal_a0(g("boost_delta_v_m_s"), burn, frac), burn_s=burn, frac=frac,
        t_vert_s=np.full(b, 4.0), theta_bo_deg=np.full(b, HGV_THETA_BO), pitch_exp=np.full(b, HGV_EXP), beta_boost=np.full(b, 5e4),
        beta_post=g("beta_kg_m2"), glide=np.ones(b, bool), h_cmd_m=g("glide_altitude_km") * 1e3,
        ld_max=g("lift_to_drag"), pullup_start=g("pullup_start_s"), pullup_dur=g("pullup_duration_s"),
        pullup_dh_m=g("pullup_dh_km") * 1e3, turn_start=g("turn_start_s"), turn_dur=g("turn_duration_s"),
        turn_bank_rad=np.radians(g("turn_bank_deg")), end_speed=g("end_speed_m_s"),
    )


def _concat_params(a: _FlightParams | None, b: _FlightParams | None) -> _FlightParams:
    if a is None:
        return b  # type: ignore[return-value]
    if b is None:
        return a
    return _FlightParams(**{k: np.concatenate([getattr(a, k), getattr(b, k)]) for k in a.__dict__})


def simulate_targets(
    ballistic: list[BallisticSpec], glide: list[GlideSpec], dt_s: float = 1.0, max_time_s: float = 6_000.0
) -> list[TargetTruth]:
    """Fly all targets (one vectorised batch) and return their truth.

    ``truth_id`` is the index in ``ballistic + glide``.
    """
    pb = _ballistic_params(ballistic, _tune_ballistic(ballistic)) if ballistic else None
    pg = _glide_params(glide) if glide else None
    p = _concat_params(pb, pg)
    res = _fly(p, dt_s, max_time_s, record=True)
    launch_t = np.array([s.launch_time_s for s in [*ballistic, *glide]], float)
    kinds = [KIND_BALLISTIC] * len(ballistic) + [KIND_HGV] * len(glide)
    out = []
    for i, kind in enumerate(kinds):  # per target, once
        live = res["alive"][:, i]
        t = res["t"][live] + launch_t[i]
        x = res["x"][live, i]
        ph = res["phase"][live, i]
        if np.isfinite(res["t_impact"][i]):
            ti = res["t_impact"][i] + launch_t[i]
            # append the interpolated impact state
            xi = hermite_interpolate(
                res["t"] + launch_t[i], res["x"][:, i], np.array([ti])
            )[0] if ti <= res["t"][-1] + launch_t[i] else x[-1]
            xi = np.asarray(xi).copy()
            xi[:3] = res["impact"][i]
            if ti > t[-1]:
                t, x, ph = np.append(t, ti), np.vstack([x, xi]), np.append(ph, ph[-1])
        out.append(
            TargetTruth(i, kind, t, x, ph, p.r0[i].copy(), res["impact"][i].copy(),
                        float(res["t_impact"][i] + launch_t[i]))
        )
    return out


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class ScenarioConfig:
    """A complete scenario.  ``constellation=None`` places the default 4-satellite
    train over the mean launch point at mid-scenario."""

    seed: int
    duration_s: float
    ballistic: tuple[BallisticSpec, ...] = ()
    glide: tuple[GlideSpec, ...] = ()
    sensor: IRSensorModel = field(default_factory=IRSensorModel)
    constellation: CircularConstellation | None = None
    epoch: datetime = DEFAULT_EPOCH


@dataclass(frozen=True)
class Scenario:
    """Simulator output: truth, detections and the sensor geometry."""

    config: ScenarioConfig
    targets: list[TargetTruth]
    detections: Detections
    frame_times_s: np.ndarray  # (F,)
    sensor_positions_ecef_m: np.ndarray  # (F, S, 3)
    constellation: CircularConstellation
    sources: np.ndarray  # (N,) targets behind each detection: 0 false alarm, >1 unresolved

    @property
    def epoch(self) -> datetime:
        return self.config.epoch

    def truth_states(self, t_s: np.ndarray) -> np.ndarray:
        """``(len(t), n_targets, 6)`` truth states, NaN where a target is not alive."""
        t = np.atleast_1d(np.asarray(t_s, float))
        return np.stack([tg.state_at(t) for tg in self.targets], axis=1)


def random_scenario_config(
    seed: int,
    n_ballistic: int = 3,
    n_glide: int = 1,
    range_km: tuple[float, float] = (1_000.0, 10_000.0),
    region_lat_lon_deg: tuple[float, float] = (40.0, 60.0),
    launch_window_s: float = 60.0,
    duration_s: float | None = None,
    sensor: IRSensorModel | None = None,
) -> ScenarioConfig:
    """Random but seed-reproducible scenario around a region."""
    rng = np.random.default_rng(seed)
    lat0, lon0 = region_lat_lon_deg
    bms = tuple(
        BallisticSpec(
            launch_lat_deg=float(lat0 + rng.uniform(-4, 4)),
            launch_lon_deg=float(lon0 + rng.uniform(-4, 4)),
            azimuth_deg=float(rng.uniform(0, 360)),
            range_km=float(rng.uniform(*range_km)),
            launch_time_s=float(np.round(rng.uniform(0, launch_window_s))),
            beta_kg_m2=float(rng.uniform(3_000, 10_000)),
        )
        for _ in range(n_ballistic)
    )
    hgvs = tuple(
        GlideSpec(
            launch_lat_deg=float(lat0 + rng.uniform(-4, 4)),
            launch_lon_deg=float(lon0 + rng.uniform(-4, 4)),
            azimuth_deg=float(rng.uniform(0, 360)),
            launch_time_s=float(np.round(rng.uniform(0, launch_window_s))),
            glide_altitude_km=float(rng.uniform(40, 65)),
            boost_delta_v_m_s=float(rng.uniform(5_800, 7_000)),
            pullup_start_s=float(rng.uniform(200, 300)),
            turn_start_s=float(rng.uniform(350, 500)),
            turn_bank_deg=float(rng.choice([-1, 1]) * rng.uniform(25, 50)),
        )
        for _ in range(n_glide)
    )
    if duration_s is None:
        duration_s = float(launch_window_s + 300 + 0.2 * max(range_km))
    return ScenarioConfig(
        seed=seed, duration_s=duration_s, ballistic=bms, glide=hgvs,
        sensor=sensor or IRSensorModel(),
    )


def simulate(config: ScenarioConfig) -> Scenario:
    """Run a scenario: truth, sensor geometry and the detection table."""
    rng = np.random.default_rng([config.seed, 0x5B])
    targets = simulate_targets(list(config.ballistic), list(config.glide))
    sm = config.sensor
    frames = np.arange(0.0, config.duration_s + 1e-9, sm.frame_period_s)
    const = config.constellation
    if const is None:
        if targets:
            mean_launch = np.mean([t.launch_ecef_m for t in targets], axis=0)
            lat = float(np.degrees(np.arcsin(mean_launch[2] / np.linalg.norm(mean_launch))))
            lon = float(np.degrees(np.arctan2(mean_launch[1], mean_launch[0])))
        else:
            lat, lon = 0.0, 0.0
        const = CircularConstellation.overlooking(lat, lon, config.duration_s / 2)
    sens = const.positions_ecef(frames)  # (F,S,3)
    n_f, n_s = sens.shape[:2]
    n_t = len(targets)

    if n_t:
        states = np.stack([tg.state_at(frames) for tg in targets], axis=1)  # (F,T,6)
        phases = np.stack([tg.phase_at(frames) for tg in targets], axis=1)  # (F,T)
        pos = states[..., :3]
        alive = np.all(np.isfinite(pos), axis=-1)
        pos_safe = np.where(alive[..., None], pos, 0.0)
        vis = visible(sens[:, :, None, :], pos_safe[:, None, :, :], sm) & alive[:, None, :]
        det = vis & (rng.random((n_f, n_s, n_t)) < sm.detection_probability)
        fi, si, ti = np.nonzero(det)
        s_pos = sens[fi, si]
        u, rng_m = los_unit(s_pos, pos_safe[fi, ti])
        ph = phases[fi, ti]
        radiant = np.select([ph == k for k in RADIANT_INTENSITY_W_SR], list(RADIANT_INTENSITY_W_SR.values()))
        t_int = irradiance(radiant, rng_m) * rng.lognormal(0.0, 0.1, len(fi))
        # closely spaced objects one sensor cannot resolve in a frame: one detection
        rows, u, t_int, t_src = merge_unresolved(fi * n_s + si, u, t_int,
                                                 sm.resolution_urad * 1e-6)
        fi, si, ti, s_pos = fi[rows], si[rows], ti[rows], s_pos[rows]
        t_los = perturb_los(u, np.full(len(fi), sm.los_noise_rad), rng)
        t_time, t_sidx, t_truth = frames[fi], si, ti
    else:
        t_los = np.zeros((0, 3))
        s_pos = np.zeros((0, 3))
        t_int = t_time = np.zeros(0)
        t_sidx = t_truth = t_src = np.zeros(0, int)

    n_fa = rng.poisson(sm.false_alarms_per_frame, (n_f, n_s))
    fa_f, fa_s = np.nonzero(n_fa)
    reps = n_fa[fa_f, fa_s]
    fa_f, fa_s = np.repeat(fa_f, reps), np.repeat(fa_s, reps)
    fa_pos = sens[fa_f, fa_s]
    fa_los = random_los_in_field_of_regard(fa_pos, sm.field_of_regard_half_angle_deg, rng)
    fa_int = 10 ** rng.uniform(-12.5, -8.5, len(fa_f))

    dets = Detections(
        time=np.concatenate([t_time, frames[fa_f]]),
        sensor_index=np.concatenate([t_sidx, fa_s]),
        sensor_position_ecef_m=np.concatenate([s_pos, fa_pos]),
        los_unit_ecef=np.concatenate([t_los, fa_los]),
        noise_rad=np.full(len(t_time) + len(fa_f), sm.los_noise_rad),
        intensity=np.concatenate([t_int, fa_int]),
        truth_id=np.concatenate([t_truth, np.full(len(fa_f), -1)]),
        epoch=config.epoch,
    )
    # time-ordered; within a frame shuffle so truth rows are not listed first
    perm = rng.permutation(len(dets))
    shuffled = dets.take(perm)
    order = shuffled.sort_order()
    sources = np.concatenate([t_src, np.zeros(len(fa_f), np.int64)])[perm][order]
    return Scenario(config, targets, shuffled.take(order), frames, sens, const, sources)


__all__ = [
    "BallisticSpec",
    "CircularConstellation",
    "GlideSpec",
    "Scenario",
    "ScenarioConfig",
    "TargetTruth",
    "hermite_interpolate",
    "random_scenario_config",
    "simulate",
    "simulate_targets",
]
