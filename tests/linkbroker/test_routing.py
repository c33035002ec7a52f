import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import floyd_warshall

from services.linkbroker.gateways import FibreModel, GatewayState, default_gateways
from services.linkbroker.routing import SlotRouter
from services.linkbroker.topology import isl_topology, plus_grid_pairs
from shared.geodesy import SPEED_OF_LIGHT_M_S, geodetic_to_ecef, look_angles
from tests.linkbroker.walker_shell import WalkerShell

SMALL = WalkerShell(n_planes=18, sats_per_plane=12, phasing=3)  # 216 satellites
FULL = WalkerShell()  # 1,584 satellites
T_S = 777.0


def _router(shell, t_s=T_S, gateways=None, **kw):
    pos = shell.ecef_km(t_s)
    pairs, kind = plus_grid_pairs(shell.plane, shell.slot, seam_slot_offset=shell.phasing)
    isl = isl_topology(pos, pairs, kind)
    return SlotRouter(pos, isl, gateways or default_gateways(), **kw), pos, isl


def _terminals(n, seed=7, lat=(-50, 50), lon=(-180, 180)):
    rng = np.random.default_rng(seed)
    return rng.uniform(*lat, n), rng.uniform(*lon, n)


def _brute_force_one_way(router, pos_km, isl, lat, lon):
    """Floyd-Warshall over a graph that also holds the terminals as nodes."""
    n, g, r = router.n_satellites, router.n_gateways, router.n_regions
    t = lat.size
    term = geodetic_to_ecef(lat, lon, 0.0)
    pos_m = pos_km * 1e3
    _, el, rng = look_angles(term[:, None, :], pos_m[None], lat[:, None], lon[:, None])
    ti, si = np.nonzero(el >= router.capacity.terminal_min_elevation_deg)
    base = router.graph.tocoo()
    total = n + g + r + t
    # Reverse orientation: terminal -> sat -> ... -> gateway -> region.
    rows = np.r_[base.col, n + g + r + ti]
    cols = np.r_[base.row, si]
    w = np.r_[base.data, rng[ti, si] / SPEED_OF_LIGHT_M_S * 1e3]
    full = sp.csr_matrix((w, (rows, cols)), shape=(total, total))
    d = floyd_warshall(full, directed=True)
    return d[n + g + r :, n + g : n + g + r]  # (T, R) terminal -> region


def test_matches_floyd_warshall_nearest_and_targeted():
    router, pos, isl = _router(SMALL)
    lat, lon = _terminals(40)
    plan = router.route(lat, lon)
    ref = _brute_force_one_way(router, pos, isl, lat, lon)
    fixed = router.fibre.fixed_overhead_ms
    graph_ms = plan.budget.propagation_ms + fixed
    best = ref.min(axis=1)
    routed = np.isfinite(best)
    assert routed.sum() > 20
    assert np.array_equal(plan.routed, routed)
    assert graph_ms[routed] == pytest.approx(best[routed], rel=1e-9)
    # Targeted: every terminal to westeurope.
    target = router.regions.index_of("westeurope")
    tplan = router.route(lat, lon, target_regions=["westeurope"] * lat.size)
    ok = tplan.routed
    assert (tplan.region[ok] == target).all()
    assert (tplan.budget.propagation_ms[ok] + fixed) == pytest.approx(ref[ok, target], rel=1e-9)


def test_matches_networkx_floyd_warshall():
    """Hypatia-style reference: networkx Floyd-Warshall over the laser graph, then
    each gateway picks its best visible satellite, then fibre to the region."""
    nx = pytest.importorskip("networkx")
    router, pos, isl = _router(SMALL)
    n = router.n_satellites
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_weighted_edges_from(zip(isl.pairs[:, 0], isl.pairs[:, 1], isl.delay_ms, strict=True))
    fw = nx.floyd_warshall_numpy(G, nodelist=range(n))  # (N, N) ms
    gl = router.gateway_links
    coo = router.graph.tocoo()
    w_gs = np.asarray(router.graph[n + gl[:, 0], gl[:, 1]]).ravel()
    assert coo.nnz > 0
    # sat -> gateway: min over satellites v the gateway sees of fw[s, v] + downlink(v).
    sat_gw = np.full((n, router.n_gateways), np.inf)
    for g in np.unique(gl[:, 0]):
        m = gl[:, 0] == g
        sat_gw[:, g] = (fw[:, gl[m, 1]] + w_gs[m][None, :]).min(axis=1)
    target = router.regions.index_of("eastus")
    fibre = router._fibre_prop_ms[:, target] + router.fibre.fixed_overhead_ms
    sat_region = (sat_gw + fibre[None, :]).min(axis=1)

    lat, lon = _terminals(30, seed=11)
    plan = router.route(lat, lon, target_regions=["eastus"] * lat.size)
    ok = plan.routed
    assert ok.sum() > 10
    s = plan.serving_satellite[ok]
    got = plan.budget.isl_ms[ok] + plan.budget.downlink_ms[ok] + plan.budget.fibre_ms[ok]
    assert got + router.fibre.fixed_overhead_ms == pytest.approx(sat_region[s], rel=1e-9)


def test_hops_are_consistent_paths():
    router, pos, isl = _router(SMALL)
    lat, lon = _terminals(60, seed=5)
    plan = router.route(lat, lon, target_regions=["japaneast"] * 60)
    links = {tuple(p) for p in isl.pairs.tolist()}
    seen_isl = False
    for t in np.flatnonzero(plan.routed):
        hops = plan.hops(int(t))
        assert hops[0] == plan.serving_satellite[t]
        assert len(hops) == plan.isl_hops[t] + 1
        assert plan.bent_pipe[t] == (len(hops) == 1)
        for a, b in zip(hops, hops[1:], strict=False):
            assert (min(a, b), max(a, b)) in links
            seen_isl = True
        gwlinks = router.gateway_links
        assert ((gwlinks[:, 0] == plan.gateway[t]) & (gwlinks[:, 1] == hops[-1])).any()
    assert seen_isl
    assert plan.hops(int(np.flatnonzero(~plan.routed)[0])) == [] if (~plan.routed).any() else True


def test_capacity_masks_reroute():
    router, pos, isl = _router(FULL)
    lat, lon = np.array([40.0, 48.0]), np.array([-100.0, 5.0])
    base = router.route(lat, lon)
    assert base.routed.all()
    s0 = base.serving_satellite[0]

    # Serving satellite's user beam full -> another satellite serves.
    beam = np.ones(router.n_satellites, bool)
    beam[s0] = False
    r2 = SlotRouter(pos, isl, default_gateways(), user_beam_available=beam).route(lat, lon)
    assert r2.serving_satellite[0] != s0 and r2.routed[0]
    assert r2.one_way_ms[0] >= base.one_way_ms[0] - 1e-9

    # Landing gateway saturated -> another gateway.
    gw_ok = np.ones(router.n_gateways, bool)
    gw_ok[base.gateway[0]] = False
    r3 = SlotRouter(pos, isl, default_gateways(), gateway_available=gw_ok).route(lat, lon)
    assert r3.gateway[0] != base.gateway[0]
    drained = default_gateways().with_state(
        str(default_gateways().ids[base.gateway[0]]), GatewayState.DRAINING
    )
    r3b = SlotRouter(pos, isl, drained).route(lat, lon)
    assert r3b.gateway[0] == r3.gateway[0]

    # A used laser link saturated -> the path avoids it.
    far = SlotRouter(pos, isl, default_gateways()).route(lat, lon, target_regions=["japaneast"] * 2)
    hops = far.hops(0)
    assert len(hops) >= 2
    used = (min(hops[0], hops[1]), max(hops[0], hops[1]))
    isl_ok = ~((isl.pairs[:, 0] == used[0]) & (isl.pairs[:, 1] == used[1]))
    r4 = SlotRouter(pos, isl, default_gateways(), isl_available=isl_ok).route(
        lat, lon, target_regions=["japaneast"] * 2
    )
    new = r4.hops(0)
    assert all({a, b} != set(used) for a, b in zip(new, new[1:], strict=False))

    # Penalty steers away from a satellite without forbidding it.
    pen = np.zeros(router.n_satellites)
    pen[s0] = 1e3
    r5 = SlotRouter(pos, isl, default_gateways(), satellite_penalty_ms=pen).route(lat, lon)
    assert r5.serving_satellite[0] != s0

    # Everything masked -> unrouted, NaN latency.
    none = SlotRouter(pos, isl, default_gateways(), satellite_available=np.zeros(router.n_satellites, bool))
    r6 = none.route(lat, lon)
    assert not r6.routed.any() and np.isnan(r6.rtt_ms).all()
    assert (r6.serving_satellite == -1).all()


def test_input_validation():
    router, pos, isl = _router(SMALL)
    with pytest.raises(ValueError):
        SlotRouter(pos, isl, default_gateways(), gateway_available=np.ones(3, bool))
    with pytest.raises(ValueError):
        router.route([0.0, 1.0], [0.0, 1.0], target_regions=["eastus"])
    with pytest.raises(ValueError):
        SlotRouter(pos[:-1], isl, default_gateways())


def test_fibre_model_is_used():
    router, _, _ = _router(SMALL, fibre=FibreModel(fixed_overhead_ms=3.0))
    plan = router.route([40.0], [-100.0])
    assert plan.budget.processing_ms[0] == pytest.approx(
        router.capacity.terminal_processing_ms
        + router.capacity.gateway_processing_ms
        + 3.0
        + (plan.isl_hops[0] + 1) * router.capacity.satellite_processing_ms
    )


# -- sky grid (visibility candidates) ---------------------------------------------


def _mixed_constellation(seed=3):
    """Random satellites between 200 and 1,200 km plus a polar cluster: several
    radius bands, satellites over the poles and across the date line."""
    rng = np.random.default_rng(seed)
    n = 3000
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u[:100] = [0.0, 0.0, 1.0] + 0.05 * rng.normal(size=(100, 3))
    u[:100] /= np.linalg.norm(u[:100], axis=1, keepdims=True)
    alt = np.r_[rng.uniform(200e3, 380e3, n // 3), rng.uniform(540e3, 560e3, n - n // 3 - 200),
                rng.uniform(1_100e3, 1_200e3, 200)]
    return u * (6_378_137.0 + alt)[:, None]


def _observers(n, seed=9):
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    lat[:4] = [90.0, -90.0, 89.9, -89.95]
    lon[4:8] = [180.0, -180.0, 179.999, -0.0001]
    alt = rng.uniform(-400.0, 12_000.0, n)  # Dead Sea shore to airliners
    return lat, lon, alt


@pytest.mark.parametrize("seg_cost", [2.0, 0.01])  # 0.01 forces several radius bands
@pytest.mark.parametrize("mask_deg", [0.0, 25.0, 60.0])
def test_sky_grid_candidates_cover_every_visible_satellite(monkeypatch, seg_cost, mask_deg):
    from shared import skygrid

    monkeypatch.setattr(skygrid, "_SEG_COST", seg_cost)
    pos = _mixed_constellation()
    grid = skygrid.SkyGrid.build(pos, 25.0, earth_radius=6_371e3)
    if seg_cost < 1:
        assert grid.band_hi.size >= 3
    lat, lon, alt = _observers(400)
    obs = geodetic_to_ecef(lat, lon, alt)
    up = np.stack(
        (np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
         np.cos(np.radians(lat)) * np.sin(np.radians(lon)),
         np.sin(np.radians(lat))), axis=1)
    per, sat = grid.candidates(obs, up, mask_deg)
    assert per.shape == (400,) and per.sum() == sat.size
    owner = np.repeat(np.arange(400), per)
    pairs = owner * pos.shape[0] + sat
    assert np.unique(pairs).size == pairs.size  # each pair at most once
    _, el, _ = look_angles(obs[:, None, :], pos[None], lat[:, None], lon[:, None])
    ti, si = np.nonzero(el >= mask_deg)
    assert np.isin(ti * pos.shape[0] + si, pairs).all()
    # ... and it is a useful filter, not everything.
    assert sat.size < 0.5 * 400 * pos.shape[0] if mask_deg > 0 else True


def test_visible_candidates_exact_against_look_angles():
    router, pos, isl = _router(FULL)
    beam = np.ones(router.n_satellites, bool)
    beam[::7] = False
    router = SlotRouter(pos, isl, default_gateways(), user_beam_available=beam)
    lat, lon, _ = _observers(300, seed=4)
    ecef = geodetic_to_ecef(lat, lon, 0.0)
    idx, rng, usable = router.visible_candidates(ecef, lat, lon)
    _, el, ref_rng = look_angles(ecef[:, None, :], pos[None] * 1e3, lat[:, None], lon[:, None])
    above = el >= router.capacity.terminal_min_elevation_deg
    real = rng != 1.0  # padding: satellite 0 at 1 m
    t_of = np.nonzero(real)[0]
    listed = np.zeros_like(above)
    listed[t_of, idx[real]] = True
    assert real.sum() == above.sum() and np.array_equal(listed, above)  # exact, no duplicates
    # usable = above the mask and user beam available; ranges are slant ranges.
    assert np.array_equal(usable[real], beam[idx[real]])
    assert not usable[~real].any()
    assert rng[real] == pytest.approx(ref_rng[t_of, idx[real]], rel=1e-12)


def test_gateway_links_match_look_angles():
    router, pos, _ = _router(FULL)
    gws = default_gateways()
    act = np.flatnonzero(gws.active_mask())
    _, el, _ = look_angles(gws.ecef_m[act][:, None, :], pos[None] * 1e3,
                           gws.latitude_deg[act][:, None], gws.longitude_deg[act][:, None])
    g, s = np.nonzero(el >= router.capacity.gateway_min_elevation_deg)
    assert np.array_equal(router.gateway_links, np.stack((act[g], s), axis=1))


def test_mixed_altitudes_match_floyd_warshall(monkeypatch):
    """Two shells at 350 and 550 km (several radius bands) against brute force."""
    from shared import skygrid

    monkeypatch.setattr(skygrid, "_SEG_COST", 0.01)
    low = WalkerShell(n_planes=12, sats_per_plane=10, phasing=1, altitude_km=350.0, inclination_deg=70.0)
    pos = np.r_[SMALL.ecef_km(T_S), low.ecef_km(T_S)]
    plane = np.r_[SMALL.plane, low.plane + 1000]
    slot = np.r_[SMALL.slot, low.slot]
    shell = np.r_[np.zeros(SMALL.n, np.int64), np.ones(low.n, np.int64)]
    pairs, kind = plus_grid_pairs(plane, slot, shell=shell)
    isl = isl_topology(pos, pairs, kind)
    router = SlotRouter(pos, isl, default_gateways())
    assert router._sky_grid().band_hi.size >= 2
    lat, lon = _terminals(60, seed=21, lat=(-80, 80))
    plan = router.route(lat, lon)
    ref = _brute_force_one_way(router, pos, isl, lat, lon)
    best = ref.min(axis=1)
    routed = np.isfinite(best)
    assert routed.sum() > 30
    assert np.array_equal(plan.routed, routed)
    graph_ms = plan.budget.propagation_ms + router.fibre.fixed_overhead_ms
    assert graph_ms[routed] == pytest.approx(best[routed], rel=1e-9)


def test_segment_argmin():
    from services.linkbroker.routing import _segment_argmin

    values = np.array([3.0, 1.0, 2.0, np.inf, np.inf, 5.0, 5.0, 0.5])
    counts = np.array([3, 0, 2, 2, 0, 1])
    pos, has = _segment_argmin(values, counts)
    assert has.tolist() == [True, False, False, True, False, True]
    assert pos[has].tolist() == [1, 5, 7]  # tie (5.0, 5.0) goes to the first
    pos, has = _segment_argmin(np.empty(0), np.zeros(3, np.int64))
    assert not has.any()


def test_route_edge_cases():
    router, _, _ = _router(SMALL)
    empty = router.route(np.empty(0), np.empty(0))
    assert empty.serving_satellite.shape == (0,)
    # Repeated names and region rows give the same routes.
    lat, lon = _terminals(12, seed=2)
    names = ["eastus", "westeurope", "japaneast"] * 4
    by_name = router.route(lat, lon, target_regions=names)
    by_row = router.route(lat, lon, target_regions=router.regions.indices_of(names))
    assert np.array_equal(by_name.region, by_row.region)
    assert np.array_equal(by_name.serving_satellite, by_row.serving_satellite)
    ok = by_name.routed
    assert (by_name.region[ok] == router.regions.indices_of(names)[ok]).all()
