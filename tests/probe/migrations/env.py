from shared.migrations import run_env
from tests.probe.store import Base

run_env(Base.metadata)
