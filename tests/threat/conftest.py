import pytest

from services.threat import report


@pytest.fixture(scope="session")
def e2e_report():
    """One seeded end-to-end run shared by the end-to-end tests (~5 s)."""
    return report.run_end_to_end(report.default_e2e_config(11))
