"""Errors the core raises for input a user can fix."""


class InvalidInput(ValueError):
    """Bad user input: a setting, a nasConfig, an architecture. Maps to INVALID_ARGUMENT / exit 2."""


def shown(value: object, limit: int = 40) -> str:
    """repr of a value for a message, cut to `limit` characters (ending in "...") so that a huge value cannot make a
    huge message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
