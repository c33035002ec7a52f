"""`python -m services.orbit`: run the orbit service alone."""

from shared.runner import main

raise SystemExit(main(["orbit"]))
