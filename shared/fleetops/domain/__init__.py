"""The pure domain: state, plans and decisions. No I/O, no clock, no Google imports."""
