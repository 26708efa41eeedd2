"""The package version (a module of its own, so that any layer may read it without importing
the public facade)."""

__version__ = "0.1.0"
