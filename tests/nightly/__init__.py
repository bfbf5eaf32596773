"""Tests of the nightly-operation pieces against real local servers and processes."""
