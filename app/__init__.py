"""Signet: a federated, verifiable signal-sharing node for child-safety work."""

__version__ = "0.1.0"
