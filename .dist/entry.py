"""Entry point of the single-file executable: the same `run()` as the `agent` console script.

Lives in the hidden `.dist/` directory (like `.ci/`) because the repository's visible top level is
fixed to the package, its docs and tests; build recipes are tooling, not part of the product.
"""

from agent.cli.main import run

run()
