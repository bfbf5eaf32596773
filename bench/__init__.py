"""Benchmark harness: agent vs restic vs borg on a nightly disk-image series (see docs/benchmarks.md).

Not part of the installed package and not a test: it takes minutes and needs root (page cache drops).
"""
