"""Helpers the test modules share: what several of them run, build or check, grouped by topic."""
