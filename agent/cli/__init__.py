"""Command line: the only layer that prints, prompts or chooses exit codes."""
