"""Benchmarks of fleetops against the machine's own limit: `python -m bench [--quick]`."""
