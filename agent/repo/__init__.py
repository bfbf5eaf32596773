"""The repository: the only code that knows the on-storage format (docs/format.md)."""
