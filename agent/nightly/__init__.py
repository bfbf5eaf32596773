"""Nightly operation: the pieces `agent run` composes (report, notifications, metrics, hooks, schedule, state)."""
