"""Tests of the documentation: runnable examples, the generated CLI reference, the bare-metal runbook."""
