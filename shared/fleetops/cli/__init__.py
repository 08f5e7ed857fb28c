"""The `fleetops` command."""
