"""Storage backends: opaque bytes under opaque keys. Imports neither `agent` nor `crypto`."""
