from pathlib import Path

import numpy as np
import pytest

from services.linkbroker.planes import assign_planes, orbit_geometry
from services.linkbroker.topology import isl_topology, plus_grid_pairs
from tests.linkbroker.walker_shell import WalkerShell


def test_orbit_geometry_recovers_walker_elements():
    sh = WalkerShell()
    r, v = sh.eci_state(321.0)
    inc, raan, u, alt = orbit_geometry(r, v)
    assert inc == pytest.approx(np.full(sh.n, 53.0))
    dr = (raan - 360.0 * sh.plane / sh.n_planes + 180.0) % 360.0 - 180.0
    assert np.abs(dr).max() < 1e-9
    d = (u - sh.arg_lat_deg(321.0) + 180.0) % 360.0 - 180.0
    assert np.abs(d).max() < 1e-9
    assert alt == pytest.approx(np.full(sh.n, 550.0))


def test_assign_planes_matches_generator_and_builds_plus_grid():
    sh = WalkerShell()
    rng = np.random.default_rng(3)
    r, v = sh.eci_state(50.0)
    inc, raan, u, alt = orbit_geometry(r, v)
    perm = rng.permutation(sh.n)  # catalogue order is arbitrary
    noisy_raan = raan[perm] + rng.normal(0, 0.1, sh.n)
    a = assign_planes(inc[perm] + rng.normal(0, 0.02, sh.n), noisy_raan, u[perm], alt[perm])
    assert a.n_planes == sh.n_planes
    assert (a.plane_sizes() == sh.sats_per_plane).all()
    # Same partition as the generator's planes.
    true_plane = sh.plane[perm]
    for p in range(a.n_planes):
        assert np.unique(true_plane[a.plane == p]).size == 1
    # Consecutive plane ids are RAAN neighbours (circularly).
    plane_raan = np.array([np.median(raan[perm][a.plane == p]) for p in range(a.n_planes)])
    step = np.diff(np.r_[plane_raan, plane_raan[0] + 360.0]) % 360.0
    assert np.allclose(step, 5.0, atol=0.01)
    pairs, kind = plus_grid_pairs(a.plane, a.slot, shell=a.shell, arg_lat_deg=a.arg_lat_deg)
    assert (np.bincount(pairs.ravel(), minlength=sh.n) == 4).all()


def test_two_shells_separate():
    s1 = WalkerShell(inclination_deg=53.0, n_planes=12, sats_per_plane=6, phasing=1, altitude_km=550)
    s2 = WalkerShell(inclination_deg=70.0, n_planes=6, sats_per_plane=5, phasing=1, altitude_km=570)
    r = np.r_[s1.eci_state()[0], s2.eci_state()[0]]
    v = np.r_[s1.eci_state()[1], s2.eci_state()[1]]
    a = assign_planes(*orbit_geometry(r, v))
    assert a.shell.tolist() == [0] * s1.n + [1] * s2.n
    assert a.n_planes == 18


TLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "starlink-2026-05-12.tle"


@pytest.mark.data
@pytest.mark.skipif(not TLE.exists(), reason="shared data absent")
def test_real_catalogue_planes_give_plus_grid():
    from sgp4.api import Satrec, SatrecArray, jday

    lines = TLE.read_text().splitlines()
    sats = [Satrec.twoline2rv(lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]
    jd, fr = jday(2026, 5, 12, 12, 0, 0)
    err, r, v = SatrecArray(sats).sgp4(np.array([jd]), np.array([fr]))
    ok = err[:, 0] == 0
    r, v = r[ok, 0], v[ok, 0]
    mean_inc = np.degrees([s.inclo for s in sats])[ok]
    mean_alt = (np.array([s.a for s in sats]) * 6378.135 - 6378.135)[ok]
    _, raan, u, _ = orbit_geometry(r, v)
    a = assign_planes(mean_inc, raan, u, mean_alt)
    assert a.n_planes > 100
    pairs, kind = plus_grid_pairs(a.plane, a.slot, shell=a.shell, arg_lat_deg=a.arg_lat_deg)
    topo = isl_topology(r, pairs, kind)
    deg = topo.degree()
    assert deg.max() <= 4
    # Real planes are partly filled and drifting: most, not all, satellites get 3-4 links.
    assert (deg >= 3).mean() > 0.7
