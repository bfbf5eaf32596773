"""Real servers started as subprocesses on loopback for the backend tests (one module each)."""
