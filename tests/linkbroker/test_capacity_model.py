import dataclasses

import pytest

from services.linkbroker.capacity_model import ASSUMPTIONS, DEFAULT_CAPACITY_MODEL, CapacityModel


def test_defaults_and_labels():
    m = DEFAULT_CAPACITY_MODEL
    assert m.terminal_min_elevation_deg == 25.0
    assert m.isl_max_range_km == 5000.0
    assert set(ASSUMPTIONS) == {f.name for f in dataclasses.fields(CapacityModel)}
    assert all(v[0] == getattr(m, k) for k, v in ASSUMPTIONS.items())
    assert m.gateway_capacity_gbps() == m.gateway_antennas_default * m.feeder_link_capacity_gbps_per_antenna


def test_validation():
    with pytest.raises(ValueError):
        CapacityModel(isl_capacity_gbps=-1)
    with pytest.raises(ValueError):
        CapacityModel(terminal_min_elevation_deg=90)
    assert DEFAULT_CAPACITY_MODEL.replace(isl_max_range_km=3000).isl_max_range_km == 3000
