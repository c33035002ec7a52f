from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.orbit.kernel import CatalogPropagator
from services.orbit.walker import PRESETS, WalkerShell, preset, walker_delta

EPOCH = datetime(2026, 5, 12, tzinfo=UTC)


def test_plane_spacing_and_phasing():
    shell = WalkerShell(6, 4, 2, 550.0, 53.0, raan_offset_deg=10.0)
    sats = walker_delta(shell, EPOCH, 90000)
    assert len(sats) == 24
    assert [s.catalog_number for s in sats] == list(range(90000, 90024))
    raan = np.array([s.raan_deg for s in sats]).reshape(6, 4)
    anomaly = np.array([s.mean_anomaly_deg for s in sats]).reshape(6, 4)
    assert np.allclose(raan[:, 0], 10.0 + 60.0 * np.arange(6))
    assert np.allclose(raan, raan[:, :1])
    assert np.allclose(np.diff(anomaly[0]), 90.0)
    # phasing: plane p is shifted by 360 * F * p / T = 30 deg per plane
    assert np.allclose((anomaly[:, 0] - 30.0 * np.arange(6)) % 360.0, 0.0)
    assert all(s.inclination_deg == 53.0 and s.eccentricity < 1e-3 for s in sats)


def test_starlink_preset_sizes():
    sats = preset("starlink_gen1", EPOCH, 100)
    assert len(sats) == 72 * 22 * 2 + 36 * 20 + 6 * 58 + 4 * 43
    assert len({s.catalog_number for s in sats}) == len(sats)
    tracking = preset("tracking_sensors", EPOCH, 1)
    assert len(tracking) == 4 and all(s.inclination_deg == 81.0 for s in tracking)
    assert set(PRESETS) >= {"starlink_gen1", "tracking_sensors"}
    with pytest.raises(KeyError):
        preset("nope", EPOCH, 1)


@pytest.mark.parametrize(("alt", "inc"), [(550.0, 53.0), (560.0, 97.6), (1000.0, 81.0)])
def test_altitude_recovered_by_sgp4(alt, inc):
    sats = walker_delta(WalkerShell(2, 3, 1, alt, inc), EPOCH, 1)
    sat = sats[0].to_satrec()
    assert sat.a * sat.radiusearthkm - sat.radiusearthkm == pytest.approx(alt, abs=1e-6)
    prop = CatalogPropagator(sats)
    period_days = sats[0].period_min / 1440.0
    fr = sats[0].epoch_fr + np.linspace(0.0, period_days, 400, endpoint=False)
    res = prop.propagate_jd(np.full(fr.shape, sats[0].epoch_jd), fr)
    assert res.ok.all()
    mean_alt = np.linalg.norm(res.position_km, axis=-1).mean(axis=0) - sat.radiusearthkm
    assert np.all(np.abs(mean_alt - alt) < 5.0)
