"""The single source of keras-fastrain's version (read by setup.cfg too)."""

__version__ = "0.1.0"
