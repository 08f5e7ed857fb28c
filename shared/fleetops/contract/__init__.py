"""The event contract: names, CloudEvents on Pub/Sub, and the typed inbound events."""
