"""`python -m agent` runs the CLI (used by tests to run the checkout under test)."""

from agent.cli.main import run

run()
