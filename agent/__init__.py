"""agent: deduplicating, encrypted disk-image backup with point-in-time restore."""

__version__ = "0.1.0"
