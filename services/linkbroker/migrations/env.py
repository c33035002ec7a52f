from services.linkbroker import contact_store  # noqa: F401 - its tables join `metadata`
from services.linkbroker.tables import metadata
from shared.migrations import run_env

run_env(metadata)
