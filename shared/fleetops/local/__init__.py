"""The local stack: a host agent and the instance program it runs as real OS processes."""
