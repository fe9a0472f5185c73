"""Errors the core raises for input a user can fix."""


class InvalidInput(ValueError):
    """Bad user input: a setting, a nasConfig, an architecture. Maps to INVALID_ARGUMENT / exit 2."""
