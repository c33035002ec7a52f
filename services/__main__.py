"""`python -m services`: the supervisor. Starts every service that exists in this checkout
(or those named in SKYBRIDGE_SERVICES) in one process and says where each listens."""

from shared.runner import main

raise SystemExit(main())
