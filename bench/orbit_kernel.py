"""The orbit kernel alone against python-sgp4's SatrecArray, and visibility, in process.

    .venv/bin/python bench/orbit_kernel.py [path/to/catalog.tle]

No service and no gRPC: `CatalogPropagator` (heyoka) against `SatrecArray` on the same
element sets and instants, the largest position difference between them, and
`visible_satellites` for 10,000 random ground points. bench/orbit.py measures the service
end to end. Skips cleanly (exit 0, a JSON line with "skipped") when the data file is absent.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where bench/platform.py would
# hide the standard library's `platform` module: take the folder off before anything imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sgp4.api import SatrecArray  # noqa: E402

from services.orbit.kernel import CatalogPropagator  # noqa: E402
from services.orbit.tle import parse_tle  # noqa: E402

DEFAULT_TLE = ROOT.parent / "shared/data/starlink-2026-05-12.tle"


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str]) -> None:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_TLE
    if not path.exists():
        print(json.dumps({"skipped": f"{path} absent"}))
        return
    figures: dict[str, float | int] = {}
    sets, rejected = parse_tle(path.read_text())
    n = len(sets)
    steps, chunk = 1440, 120
    print(f"catalog {path.name}: {n} element sets, {len(rejected)} rejected")
    start = (sets[0].epoch_jd + 1.0, 0.0)

    t0 = time.perf_counter()
    prop = CatalogPropagator(sets)
    print(
        f"heyoka propagator build: {time.perf_counter() - t0:.3f} s "
        f"({int(prop.deep_space.sum())} deep-space -> SatrecArray)"
    )

    def run_kernel() -> None:
        for _, res in prop.iter_grid(start, 60.0, steps, chunk):
            assert res.position_km.shape == (res.jd.size, n, 3)

    sat_array = SatrecArray([s.to_satrec() for s in sets])
    jd, fr = prop.grid_jd(*start, 60.0, 0, steps)

    def run_satrecarray() -> None:
        for i in range(0, steps, chunk):
            sat_array.sgp4(jd[i : i + chunk], fr[i : i + chunk])

    t_kernel = _best(run_kernel)
    t_ref = _best(run_satrecarray, repeat=2)
    states = n * steps
    print(
        f"kernel (heyoka, {chunk}-step chunks, (T,N,3) output + masking): "
        f"{states / t_kernel / 1e6:.1f} M states/s ({t_kernel:.2f} s for {states} states)"
    )
    print(f"python-sgp4 SatrecArray: {states / t_ref / 1e6:.1f} M states/s ({t_ref:.2f} s)")
    print(f"speed-up: {t_ref / t_kernel:.1f}x")
    figures.update(satellites=n, kernel_states_per_s=round(states / t_kernel),
                   satrecarray_states_per_s=round(states / t_ref),
                   kernel_ratio=round(t_ref / t_kernel, 2))

    res = prop.propagate_jd(jd[:60], fr[:60])
    e, r, _ = sat_array.sgp4(jd[:60], fr[:60])
    diff = np.abs(res.position_km - r.transpose(1, 0, 2))
    print(
        f"max |heyoka - SatrecArray| position over 60 steps: {np.nanmax(diff) * 1e6:.3f} mm; "
        f"error-code mismatches: {int((res.error != e.T).sum())}"
    )
    figures.update(max_difference_mm=round(float(np.nanmax(diff)) * 1e6, 3),
                   error_code_mismatches=int((res.error != e.T).sum()))

    from services.orbit.visibility import visible_satellites
    from shared.frames import teme_to_itrf

    one = prop.propagate_jd(jd[:1], fr[:1])
    itrf = teme_to_itrf(one.position_km, one.jd, one.fr)[0]
    ok = np.isfinite(itrf).all(axis=1)
    itrf = itrf[ok]
    rng = np.random.default_rng(1)
    p = 10_000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, p)))
    lon = rng.uniform(-180, 180, p)
    alt = rng.uniform(0, 2000, p)
    for min_el in (10.0, 25.0):
        holder = {}

        def run_vis(min_el=min_el, holder=holder) -> None:
            holder["v"] = visible_satellites(lat, lon, alt, itrf, min_el)

        t_vis = _best(run_vis, repeat=5)
        print(
            f"visibility {p} points x {itrf.shape[0]} sats, min el {min_el} deg: "
            f"{t_vis * 1e3:.1f} ms, {holder['v'].sat_index.size} visible pairs"
        )
        figures[f"visibility_ms_{min_el:g}deg"] = round(t_vis * 1e3, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv)
