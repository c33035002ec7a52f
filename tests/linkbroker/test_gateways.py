import numpy as np
import pytest

from services.linkbroker.gateways import (
    FibreModel,
    Gateway,
    GatewayState,
    GatewayTable,
    default_gateways,
    shell_coverage_latitude_deg,
)
from services.linkbroker.regions import UnknownRegionError, load_regions
from shared.geodesy import SPEED_OF_LIGHT_M_S


def test_fibre_model_numbers():
    m = FibreModel()
    # 1,000 km great circle -> 1,500 km of fibre at c/1.468.
    expected = 1.5e6 / (SPEED_OF_LIGHT_M_S / 1.468) * 1e3
    assert m.propagation_ms_for_distance(1e6) == pytest.approx(expected)
    assert expected == pytest.approx(7.345, abs=0.01)
    assert m.one_way_ms(0, 0, 0, 0) == pytest.approx(m.fixed_overhead_ms)
    # New York -> London, ~5,570 km great circle -> ~41 ms one way with factor 1.5.
    d = m.propagation_ms(40.71, -74.01, 51.51, -0.13)
    assert 38 < d < 44
    assert FibreModel(route_factor=1.0).propagation_ms(40.71, -74.01, 51.51, -0.13) < d
    with pytest.raises(ValueError):
        FibreModel(route_factor=0.9)


def test_coverage_latitude():
    lat = shell_coverage_latitude_deg(53.0, 550.0, 25.0)
    assert 61.0 < lat < 62.0


def test_default_gateways():
    gws = default_gateways()
    names = set(gws.backhaul_region.tolist())
    assert "norwayeast" in names and "eastus" in names and "australiaeast" in names
    assert "swedencentral" not in names
    assert (np.abs(gws.latitude_deg) <= 60).all()
    assert len(gws) == int((np.abs(load_regions().latitude_deg) <= 60).sum())
    assert gws.active_mask().all()
    assert gws.ecef_m.shape == (len(gws), 3)
    assert np.allclose(np.linalg.norm(gws.ecef_m, axis=1), 6.37e6, rtol=0.01)
    fib = gws.fibre_ms_to_regions(load_regions())
    assert fib.shape == (len(gws), len(load_regions()))
    i = gws.index_of("gw-eastus")
    assert fib[i, load_regions().index_of("eastus")] == pytest.approx(FibreModel().fixed_overhead_ms)


def test_states_and_validation():
    gws = default_gateways()
    drained = gws.with_state("gw-eastus", GatewayState.DRAINING)
    assert not drained.active_mask()[gws.index_of("gw-eastus")]
    assert gws.active_mask()[gws.index_of("gw-eastus")]
    assert drained.row(gws.index_of("gw-eastus")).state is GatewayState.DRAINING
    row = gws.row(0)
    with pytest.raises(ValueError):
        GatewayTable.from_gateways([row, row])
    bad = Gateway("x", 0, 0, 0, 1, 1.0, "marsnorth", GatewayState.ACTIVE)
    with pytest.raises(UnknownRegionError):
        GatewayTable.from_gateways([bad])
