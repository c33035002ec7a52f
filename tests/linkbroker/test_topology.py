import numpy as np
import pytest

from services.linkbroker.topology import CROSS_PLANE, INTRA_PLANE, isl_topology, plus_grid_pairs
from tests.linkbroker.walker_shell import WalkerShell

SHELL = WalkerShell()  # 53 deg, 72 x 22, F = 5, 550 km


def _pairs(**kw):
    return plus_grid_pairs(SHELL.plane, SHELL.slot, **kw)


def test_plus_grid_degree_four_and_counts():
    pairs, kind = _pairs(arg_lat_deg=SHELL.arg_lat_deg())
    assert len(pairs) == 2 * SHELL.n
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert (np.bincount(pairs.ravel(), minlength=SHELL.n) == 4).all()
    assert (kind == INTRA_PLANE).sum() == SHELL.n
    assert (kind == CROSS_PLANE).sum() == SHELL.n
    intra = pairs[kind == INTRA_PLANE]
    assert (SHELL.plane[intra[:, 0]] == SHELL.plane[intra[:, 1]]).all()
    cross = pairs[kind == CROSS_PLANE]
    dp = np.abs(SHELL.plane[cross[:, 0]] - SHELL.plane[cross[:, 1]])
    assert set(dp.tolist()) == {1, SHELL.n_planes - 1}


def test_seam_links_last_plane_to_first_with_phasing_offset():
    pairs, kind = _pairs(arg_lat_deg=SHELL.arg_lat_deg())
    cross = pairs[kind == CROSS_PLANE]
    last = SHELL.n_planes - 1
    seam = cross[(SHELL.plane[cross[:, 0]] == 0) & (SHELL.plane[cross[:, 1]] == last)]
    assert len(seam) == SHELL.sats_per_plane
    first_slot, last_slot = SHELL.slot[seam[:, 0]], SHELL.slot[seam[:, 1]]
    assert ((last_slot + SHELL.phasing) % SHELL.sats_per_plane == first_slot).all()
    # Slot matching with the documented seam offset gives the same graph.
    slot_pairs, slot_kind = _pairs(seam_slot_offset=SHELL.phasing)
    assert np.array_equal(slot_pairs, pairs) and np.array_equal(slot_kind, kind)


def test_no_wrap_drops_seam():
    pairs, _ = _pairs(arg_lat_deg=SHELL.arg_lat_deg(), wrap_planes=False)
    deg = np.bincount(pairs.ravel(), minlength=SHELL.n)
    edge_planes = (SHELL.plane == 0) | (SHELL.plane == SHELL.n_planes - 1)
    assert (deg[edge_planes] == 3).all() and (deg[~edge_planes] == 4).all()


def test_shells_do_not_link_to_each_other():
    plane = np.r_[SHELL.plane, SHELL.plane + 100]
    slot = np.r_[SHELL.slot, SHELL.slot]
    shell = np.r_[np.zeros(SHELL.n), np.ones(SHELL.n)].astype(int)
    pairs, _ = plus_grid_pairs(plane, slot, shell=shell, seam_slot_offset=SHELL.phasing)
    assert (shell[pairs[:, 0]] == shell[pairs[:, 1]]).all()
    assert len(pairs) == 4 * SHELL.n


def test_range_limit_and_delays():
    pos = SHELL.ecef_km(600.0)
    pairs, kind = _pairs(seam_slot_offset=SHELL.phasing)
    topo = isl_topology(pos, pairs, kind)
    assert len(topo) == len(pairs)
    inplane = 2 * SHELL.radius_m / 1e3 * np.sin(np.pi / SHELL.sats_per_plane)
    assert topo.length_km[topo.kind == INTRA_PLANE] == pytest.approx(inplane)
    assert topo.length_km[topo.kind == CROSS_PLANE].max() < 700
    assert topo.delay_ms == pytest.approx(topo.length_km / 299_792.458 * 1e3)
    short = isl_topology(pos, pairs, kind, max_range_km=1500)
    assert (short.kind == CROSS_PLANE).all() and len(short) == SHELL.n
    g = topo.csr()
    assert g.shape == (SHELL.n, SHELL.n) and (g != g.T).nnz == 0
    assert g.nnz == 2 * len(topo)
    mask = np.ones(len(topo), bool)
    mask[0] = False
    assert topo.csr(mask).nnz == 2 * len(topo) - 2


def test_earth_grazing_links_dropped():
    near = np.radians(20.0)
    pos = np.array([[7000.0, 0, 0], [-7000.0, 0, 0], [7000 * np.cos(near), 7000 * np.sin(near), 0]])
    pairs = np.array([[0, 1], [0, 2]])
    topo = isl_topology(pos, pairs, np.zeros(2, np.int8), max_range_km=20_000)
    assert topo.pairs.tolist() == [[0, 2]]
