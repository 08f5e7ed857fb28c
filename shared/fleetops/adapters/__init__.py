"""Adapters: the only modules that talk to Google Cloud or the OS."""
