import pytest

from tools.threatsim import report
from tools.threatsim import scenario as sc


@pytest.fixture(scope="session")
def e2e_report():
    """One seeded end-to-end run shared by the end-to-end tests (~5 s)."""
    return report.run_end_to_end(report.default_e2e_config(11))


@pytest.fixture(scope="session")
def one_missile():
    """One ballistic missile (1,500 km, impact at ~880 s) seen by the 4-satellite train."""
    cfg = sc.random_scenario_config(5, n_ballistic=1, n_glide=0, range_km=(1_500, 1_600),
                                    launch_window_s=0.0, duration_s=900.0)
    return sc.simulate(cfg)
