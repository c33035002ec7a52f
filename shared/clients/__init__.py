"""Clients of the suite's services that other services (and tests and benchmarks) use:
orbit's `Propagate` and `VisibleSatellites` as numpy arrays (`orbit`), and provisioning's
batched entitlement checks (`entitlements`). One client per service call, in one place."""
