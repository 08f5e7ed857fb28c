"""fleetops: an event-driven control plane for a fleet of single-tenant SaaS instances."""

__version__ = "0.1.0"
