import numpy as np
import pytest

from services.linkbroker.gateways import default_gateways
from services.linkbroker.latency import latency_budget, metres_to_ms, physical_floor_rtt_ms
from services.linkbroker.routing import SlotRouter
from services.linkbroker.topology import isl_topology, plus_grid_pairs
from tests.linkbroker.walker_shell import WalkerShell

SHELL = WalkerShell()  # 550 km, 53 deg, 72 x 22
T_S = 1800.0

# Continental US terminals (lat, lon): cities spread coast to coast.
US = np.array(
    [
        (47.61, -122.33), (45.52, -122.68), (37.77, -122.42), (34.05, -118.24),
        (32.72, -117.16), (33.45, -112.07), (36.17, -115.14), (39.74, -104.99),
        (35.08, -106.65), (40.76, -111.89), (43.62, -116.20), (46.87, -113.99),
        (44.98, -93.27), (41.88, -87.63), (39.10, -94.58), (32.78, -96.80),
        (29.76, -95.37), (30.27, -97.74), (35.15, -90.05), (33.75, -84.39),
        (25.76, -80.19), (28.54, -81.38), (35.23, -80.84), (38.91, -77.04),
        (39.95, -75.17), (40.71, -74.01), (42.36, -71.06), (43.66, -70.26),
        (42.33, -83.05), (39.96, -83.00), (36.16, -86.78), (46.81, -100.78),
    ]
)


@pytest.fixture(scope="module")
def us_plan():
    pos = SHELL.ecef_km(T_S)
    pairs, kind = plus_grid_pairs(SHELL.plane, SHELL.slot, seam_slot_offset=SHELL.phasing)
    router = SlotRouter(pos, isl_topology(pos, pairs, kind), default_gateways())
    return router, router.route(US[:, 0], US[:, 1])


def test_physical_floor_value():
    assert physical_floor_rtt_ms(550.0) == pytest.approx(7.338, abs=1e-3)
    assert metres_to_ms(299_792_458.0) == pytest.approx(1000.0)


def test_never_below_floor(us_plan):
    router, plan = us_plan
    assert plan.routed.all()
    floor = physical_floor_rtt_ms(SHELL.altitude_km)
    assert (2 * plan.budget.propagation_ms >= floor).all()
    assert (plan.budget.uplink_ms >= metres_to_ms(SHELL.altitude_km * 1e3) * 0.999).all()
    assert (plan.rtt_ms > floor).all()
    # Random terminals worldwide too.
    rng = np.random.default_rng(2)
    wplan = router.route(rng.uniform(-55, 55, 500), rng.uniform(-180, 180, 500))
    ok = wplan.routed
    assert ok.mean() > 0.95
    assert (2 * wplan.budget.propagation_ms[ok] >= floor).all()


def test_us_rtt_within_public_range(us_plan):
    router, plan = us_plan
    us_regions = {r.name for r in router.regions.regions if r.geography_group in ("US", "Canada")}
    assert set(router.regions.names[plan.region].tolist()) <= us_regions
    assert (plan.rtt_ms >= 20.0).all() and (plan.rtt_ms <= 50.0).all(), plan.rtt_ms


def test_budget_arithmetic():
    b = latency_budget(2.0, 1.0, 2.5, 3.0, 2, fibre_fixed_ms=0.5)
    d = b.as_dict()
    assert d["processing_ms"] == pytest.approx(1.0 + 2 * 0.1 + 2.0 + 0.5)
    assert d["one_way_ms"] == pytest.approx(8.5 + d["processing_ms"])
    assert d["rtt_ms"] == pytest.approx(2 * d["one_way_ms"] + 10.0)
