"""`python -m services.gateway`: run the gateway alone."""

from shared.runner import main

raise SystemExit(main(["gateway"]))
