"""Use cases: load through ports, decide with the domain, save in one transaction, then publish."""
