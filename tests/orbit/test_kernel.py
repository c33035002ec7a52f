from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sgp4.api import SatrecArray

from services.orbit.kernel import CatalogPropagator, cached_propagator, clear_propagator_cache
from services.orbit.tle import parse_tle
from tests.orbit.conftest import ISS_L1, ISS_L2

GEO = (
    "1 26900U 01039A   06106.74503247  .00000045  00000-0  10000-3 0  8290\n"
    "2 26900   0.0164 266.5378 0003319  86.1794 182.2590  1.00273847 16981\n"
)
# Vallado's 28872: decays (error 6) within an hour of epoch
DECAY = (
    "1 28872U 05037B   05333.02012661  .25992681  00000-0  24476-3 0  1534\n"
    "2 28872  96.4736 157.9986 0303955 244.0492 110.6523 16.46015938 10708\n"
)


@pytest.fixture(scope="module")
def mixed():
    sets, bad = parse_tle(f"{ISS_L1}\n{ISS_L2}\n{GEO}{DECAY}")
    assert bad == []
    return sets


def test_matches_satrecarray_and_merges_deep_space(mixed):
    prop = CatalogPropagator(mixed)
    assert prop.deep_space.tolist() == [False, True, False]
    jd = np.full(50, 2453700.5)
    fr = np.linspace(0.0, 3.0, 50)
    res = prop.propagate_jd(jd, fr)
    assert res.position_km.shape == (50, 3, 3) and res.error.shape == (50, 3)
    e, r, v = SatrecArray([s.to_satrec() for s in mixed]).sgp4(jd, fr)
    assert np.array_equal(res.error, e.T)
    ok = res.ok
    assert np.allclose(res.position_km[ok], r.transpose(1, 0, 2)[ok], atol=1e-6)
    assert np.allclose(res.velocity_km_s[ok], v.transpose(1, 0, 2)[ok], atol=1e-9)


def test_error_rows_masked(mixed):
    prop = CatalogPropagator(mixed)
    es = mixed[2]
    t = np.array([0.0, 30.0, 55.0, 60.0]) / 1440.0  # python-sgp4: 6 from 55 min
    res = prop.propagate_jd(np.full(4, es.epoch_jd), es.epoch_fr + t)
    err = res.error[:, 2]
    assert err[0] == 0 and err[-1] == 6
    assert np.isnan(res.position_km[err != 0, 2]).all()
    assert np.isfinite(res.position_km[err == 0, 2]).all()


def test_chunks_equal_whole_and_times_entry(mixed):
    prop = CatalogPropagator(mixed[:2])
    start = datetime(2006, 4, 20, tzinfo=UTC)
    whole = prop.propagate_grid(start, 60.0, 0, 100)
    parts = list(prop.iter_grid(start, 60.0, 100, chunk_steps=30))
    assert [i for i, _ in parts] == [0, 30, 60, 90]
    stacked = np.concatenate([r.position_km for _, r in parts])
    assert np.array_equal(stacked, whole.position_km)
    times = [start + timedelta(minutes=k) for k in (0, 17, 99)]
    explicit = prop.propagate_times(times)
    assert np.allclose(explicit.position_km, whole.position_km[[0, 17, 99]], atol=1e-6)
    as64 = prop.propagate_times(np.array([t.replace(tzinfo=None) for t in times], "datetime64[us]"))
    assert np.array_equal(as64.position_km, explicit.position_km)


def test_cache_builds_once_and_is_thread_safe(mixed):
    clear_propagator_cache()
    calls = []

    def factory():
        calls.append(1)
        return mixed

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cached_propagator("v1", factory)))
        for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(calls) == 1 and all(r is results[0] for r in results)
    # concurrent calls on one propagator give identical answers
    jd, fr = np.full(20, 2453700.5), np.linspace(0, 1, 20)
    ref = results[0].propagate_jd(jd, fr).position_km
    outs = []
    threads = [
        threading.Thread(target=lambda: outs.append(results[0].propagate_jd(jd, fr).position_km))
        for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(np.array_equal(o, ref, equal_nan=True) for o in outs)
    clear_propagator_cache()


def test_real_catalog_day_chunk(starlink_text):
    sets, _ = parse_tle(starlink_text)
    prop = CatalogPropagator(sets)
    res = prop.propagate_grid((sets[0].epoch_jd + 1.0, 0.0), 60.0, 0, 10)
    assert res.position_km.shape == (10, len(sets), 3)
    radius = np.linalg.norm(res.position_km[res.ok], axis=-1)
    assert radius.min() > 6378.0 and radius.max() < 7500.0


def test_real_catalog_agrees_with_python_sgp4_to_the_millimetre(starlink_text):
    """The kernel is built with fast math: on the real catalog, over the service's whole
    30-day window, every state it does not flag is within 1 mm (and 1 mm/s) of
    python-sgp4, and both flag the same states."""
    sets, _ = parse_tle(starlink_text)
    sets = sets[::5]  # 2,000-odd satellites keep the reference quick
    prop = CatalogPropagator(sets)
    epoch = max(s.epoch_jd + s.epoch_fr for s in sets)
    jd = np.full(40, np.floor(epoch))
    fr = (epoch - jd) + np.linspace(0.0, 30.0, 40)
    res = prop.propagate_jd(jd, fr)
    e, r, v = SatrecArray([s.to_satrec() for s in sets]).sgp4(jd, fr)
    assert np.array_equal(res.error, e.T)
    ok = res.ok
    assert ok.sum() > 0.5 * ok.size
    assert np.abs(res.position_km[ok] - r.transpose(1, 0, 2)[ok]).max() < 1e-6
    assert np.abs(res.velocity_km_s[ok] - v.transpose(1, 0, 2)[ok]).max() < 1e-6
