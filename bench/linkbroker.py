"""Link-broker benchmarks. Run from the repo root: ``.venv/bin/python bench/linkbroker.py``.

Parts (each adds to one ``figures`` dict; the last line printed is that dict as
one JSON object; ``--skip PART`` leaves a part out):

``routing`` - the routing snapshot of one 15 s slot for 10,000 terminals.

* Walker: the 1,584-satellite 550 km / 53 deg shell (Walker 72 x 22, F = 5) with
  its +Grid laser links and the default gateways. Our router (one multi-source
  Dijkstra + vectorized terminal lookups) against the method of the Hypatia
  simulator, measured side by side in the same run: networkx Floyd-Warshall
  (``networkx.floyd_warshall_numpy``) over the same laser graph, then each
  gateway takes its best visible satellite, then the same terminal lookup. Both
  answers are compared. Target: >= 100x.
* Real catalogue: ../shared/data/starlink-2026-05-12.tle (skipped if absent):
  SGP4 to a fixed instant, planes recovered by :mod:`services.linkbroker.planes`,
  then the slot snapshot (``isl_topology`` + ``SlotRouter`` + ``route``).
  Target: under 100 ms (best of ``--repeats``; the spread is printed too).

``load`` - RequestLink for one-hour windows at a steady 100/s for 60 s across the running
suite on PostgreSQL (see bench/linkbroker_load.py): p50, p99 (target < 100 ms), errors
(target 0).

``memory`` - one hour of Gen1 geometry as the broker keeps it against the layout it
replaced (float64, a whole router per slot), side by side: MiB and ratio.

``estimate`` - the worst-case EstimatePath (24 h window, 7 days ahead) against the running
suite on PostgreSQL: the broker's RSS before, after and at its peak, with its budget.

New parts: write ``def my_part(args, figures) -> None`` and register it in
:data:`PARTS` (and any options in :func:`build_parser`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ itself is sys.path[0]; keep its modules from shadowing stdlib.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.linkbroker_load import add_arguments as add_load_arguments  # noqa: E402
from bench.linkbroker_load import load_part  # noqa: E402
from bench.linkbroker_memory import estimate_part, memory_part  # noqa: E402
from services.linkbroker.gateways import default_gateways  # noqa: E402
from services.linkbroker.planes import assign_planes, orbit_geometry  # noqa: E402
from services.linkbroker.routing import SlotRouter  # noqa: E402
from services.linkbroker.topology import isl_topology, plus_grid_pairs  # noqa: E402
from tests.linkbroker.walker_shell import WalkerShell  # noqa: E402

N_TERMINALS = 10_000
TLE_PATH = ROOT.parent / "shared" / "data" / "starlink-2026-05-12.tle"
REPEATS = 5


def land_ish_terminals(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Random terminals between 55 S and 60 N, area-uniform in latitude."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(np.sin(np.radians(-55.0)), np.sin(np.radians(60.0)), n)
    return np.degrees(np.arcsin(s)), rng.uniform(-180.0, 180.0, n)


def best_of(fn, repeats: int = REPEATS):
    """``(best seconds, last result, all times in seconds)``."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out, times


def spread_ms(times: list[float]) -> list[float]:
    """``[min, median, max]`` in ms."""
    return [round(float(x) * 1e3, 2) for x in (np.min(times), np.median(times), np.max(times))]


def walker_part(lat, lon, figures: dict, repeats: int = REPEATS) -> None:
    shell = WalkerShell()
    pos = shell.ecef_km(1800.0)
    pairs, kind = plus_grid_pairs(shell.plane, shell.slot, seam_slot_offset=shell.phasing)
    gws = default_gateways()

    def ours():
        isl = isl_topology(pos, pairs, kind)
        router = SlotRouter(pos, isl, gws)
        return router, router.route(lat, lon)

    t_ours, (router, plan), ours_times = best_of(ours, repeats)
    graph_ms = plan.budget.propagation_ms + router.fibre.fixed_overhead_ms
    print(
        f"walker 72x22: {router.n_satellites} sats, {len(router.gateway_links)} gw links, "
        f"{router.graph.nnz} edges; ours {t_ours * 1e3:.1f} ms for {N_TERMINALS} terminals "
        f"(best of {len(ours_times)}; min/median/max {spread_ms(ours_times)} ms) "
        f"(routed {plan.routed.mean():.3f}, RTT median {np.nanmedian(plan.rtt_ms):.1f} ms)"
    )
    figures.update(
        walker_sats=router.n_satellites,
        walker_ours_ms=round(t_ours * 1e3, 2),
        walker_ours_ms_min_median_max=spread_ms(ours_times),
        walker_routed_fraction=round(float(plan.routed.mean()), 4),
        walker_rtt_ms_p5_p50_p95=[round(float(x), 2) for x in np.nanpercentile(plan.rtt_ms, [5, 50, 95])],
    )
    try:
        import networkx as nx
    except ImportError:
        print("networkx not installed: Floyd-Warshall comparison skipped (needs networkx pinned)")
        figures["networkx"] = "missing"
        return

    n = router.n_satellites
    isl = isl_topology(pos, pairs, kind)

    def hypatia():
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_weighted_edges_from(zip(isl.pairs[:, 0].tolist(), isl.pairs[:, 1].tolist(), isl.delay_ms.tolist(), strict=True))
        fw = nx.floyd_warshall_numpy(g, nodelist=range(n))
        gl = router.gateway_links
        w_gs = np.asarray(router.graph[n + gl[:, 0], gl[:, 1]]).ravel()
        sat_gw = np.full((n, router.n_gateways), np.inf)
        for k in np.unique(gl[:, 0]):
            m = gl[:, 0] == k
            sat_gw[:, k] = (fw[:, gl[m, 1]] + w_gs[m][None, :]).min(axis=1)
        fibre = router._fibre_prop_ms + router.fibre.fixed_overhead_ms  # (G, R)
        sat_best = (sat_gw[:, :, None] + fibre[None, :, :]).min(axis=(1, 2))
        ecef = router_ecef(lat, lon)
        cand, rng, usable = router.visible_candidates(ecef, lat, lon)
        cost = np.where(usable, rng / 299_792_458.0 * 1e3 + sat_best[cand], np.inf)
        return cost.min(axis=1)

    t_fw, fw_best, _ = best_of(hypatia, repeats=1)
    ok = np.isfinite(fw_best) & plan.routed
    agree = float(np.max(np.abs(fw_best[ok] - graph_ms[ok]))) if ok.any() else float("nan")
    ratio = t_fw / t_ours
    print(
        f"networkx Floyd-Warshall (Hypatia method): {t_fw * 1e3:.0f} ms; ratio {ratio:.0f}x "
        f"(target >= 100x: {'met' if ratio >= 100 else 'NOT met'}); "
        f"max |difference| in one-way latency {agree:.2e} ms over {int(ok.sum())} terminals"
    )
    figures.update(
        walker_floyd_warshall_ms=round(t_fw * 1e3, 1),
        walker_speedup=round(ratio, 1),
        walker_max_abs_diff_ms=agree,
    )


def router_ecef(lat, lon):
    from shared.geodesy import geodetic_to_ecef

    return geodetic_to_ecef(lat, lon, 0.0).reshape(-1, 3)


def real_part(lat, lon, figures: dict, repeats: int = REPEATS) -> None:
    if not TLE_PATH.exists():
        print(f"{TLE_PATH} absent: real-catalogue part skipped")
        figures["real_catalog"] = "absent"
        return
    from sgp4.api import Satrec, SatrecArray, jday
    from sgp4.propagation import gstime

    lines = TLE_PATH.read_text().splitlines()
    sats = [Satrec.twoline2rv(lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]
    jd, fr = jday(2026, 5, 12, 12, 0, 0)
    err, r, v = SatrecArray(sats).sgp4(np.array([jd]), np.array([fr]))
    ok = err[:, 0] == 0
    r_teme, v_teme = r[ok, 0], v[ok, 0]
    # TEME -> Earth-fixed by Greenwich mean sidereal time (polar motion ignored).
    th = gstime(jd + fr)
    c, s = np.cos(th), np.sin(th)
    pos = np.stack((c * r_teme[:, 0] + s * r_teme[:, 1], -s * r_teme[:, 0] + c * r_teme[:, 1], r_teme[:, 2]), 1)
    mean_inc = np.degrees([x.inclo for x in sats])[ok]
    mean_alt = (np.array([x.a for x in sats]) * 6378.135 - 6378.135)[ok]

    def planes():
        _, raan, u, _ = orbit_geometry(r_teme, v_teme)
        a = assign_planes(mean_inc, raan, u, mean_alt)
        p, k = plus_grid_pairs(a.plane, a.slot, shell=a.shell, arg_lat_deg=a.arg_lat_deg)
        return a, p, k

    t_planes, (assign, pairs, kind), _ = best_of(planes, repeats)
    gws = default_gateways()

    def snapshot():
        isl = isl_topology(pos, pairs, kind)
        router = SlotRouter(pos, isl, gws)
        return isl, router.route(lat, lon)

    t_snap, (isl, plan), snap_times = best_of(snapshot, repeats)
    deg = isl.degree()
    print(
        f"real catalogue: {pos.shape[0]} sats, {assign.shell.max() + 1} shells, {assign.n_planes} planes, "
        f"{len(isl)} laser links (degree 4: {np.mean(deg == 4):.2f}, >=3: {np.mean(deg >= 3):.2f}); "
        f"planes+pairs {t_planes * 1e3:.1f} ms (per catalogue version); "
        f"slot snapshot {t_snap * 1e3:.1f} ms, best of {len(snap_times)} (min/median/max "
        f"{spread_ms(snap_times)} ms; target < 100 ms: {'met' if t_snap < 0.1 else 'NOT met'}) "
        f"(routed {plan.routed.mean():.3f}, "
        f"RTT median {np.nanmedian(plan.rtt_ms):.1f} ms)"
    )
    figures.update(
        real_sats=int(pos.shape[0]),
        real_planes=assign.n_planes,
        real_links=len(isl),
        real_degree4_fraction=round(float(np.mean(deg == 4)), 3),
        real_planes_ms=round(t_planes * 1e3, 2),
        real_snapshot_ms=round(t_snap * 1e3, 2),
        real_snapshot_ms_min_median_max=spread_ms(snap_times),
        real_routed_fraction=round(float(plan.routed.mean()), 4),
        real_rtt_ms_p5_p50_p95=[round(float(x), 2) for x in np.nanpercentile(plan.rtt_ms, [5, 50, 95])],
    )


def routing_part(args: argparse.Namespace, figures: dict) -> None:
    """Routing snapshot: Walker shell vs networkx Floyd-Warshall, then the real catalogue."""
    lat, lon = land_ish_terminals(N_TERMINALS)
    figures["terminals"] = N_TERMINALS
    walker_part(lat, lon, figures, args.repeats)
    real_part(lat, lon, figures, args.repeats)


# name -> part(args, figures); run in this order.
PARTS: dict[str, Callable[[argparse.Namespace, dict], None]] = {
    "routing": routing_part,
    "load": load_part,
    "memory": memory_part,
    "estimate": estimate_part,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--skip", action="append", default=[], choices=sorted(PARTS),
                        help="leave a part out (repeatable)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="best-of-N for our timings")
    add_load_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    figures: dict = {"parts": [name for name in PARTS if name not in args.skip]}
    for name in figures["parts"]:
        PARTS[name](args, figures)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
