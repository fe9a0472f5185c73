"""The constraints on assignment values, and which value of a trial is the network it stands for.

Assignment values are pasted into YAML and shell arguments by plain string
substitution, shown as CSV in the Katib UI, and all of them are stored in the
Suggestion resource (etcd limits its size).
"""

from __future__ import annotations

import re
from typing import Mapping

from .codec import decode
from .errors import InvalidInput
from .metric_format import BEST_ARCHITECTURE_METRIC

#: Characters no assignment value may hold: whitespace, quotes, commas, `$`, backquotes and backslashes.
UNSAFE_VALUE = re.compile(r'[\s",$`\'\\]')
#: Longest assignment value, in bytes of UTF-8: this project's bound, not Katib's (Katib sets none), so that the
#: Suggestion object, which keeps every trial's values, stays within etcd's object size (about 1.5 MiB) for
#: hundreds of trials of the longest text and thousands of the examples' (100-400 bytes).
MAX_VALUE_BYTES = 4096
ARCHITECTURE_ASSIGNMENT = "architecture"


def unsafe_value_reason(value: str) -> str | None:
    """Why `value` cannot be an assignment value, or None when it can."""
    if UNSAFE_VALUE.search(value):
        return "it holds whitespace, a quote, a comma, '$', '`' or '\\'"
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        return f"it is {size} bytes long, over the limit of {MAX_VALUE_BYTES}"
    return None


def final_architecture(assignments: Mapping[str, str], metrics: Mapping[str, str]) -> str | None:
    """The architecture text a trial's result belongs to, or None.

    A one-shot search trial is assigned the supernet and reports the network it derived as the string
    metric Best-Architecture: that network is the result. Any other trial's result is its
    `architecture` assignment, else the first assignment that decodes as an architecture.
    """
    reported = metrics.get(BEST_ARCHITECTURE_METRIC, "")
    ordered = sorted(assignments.items(), key=lambda item: item[0] != ARCHITECTURE_ASSIGNMENT)
    for value in [reported] + [value for _, value in ordered]:
        text = value.strip().strip('"')
        if not text:
            continue
        try:
            decode(text)
        except InvalidInput:
            continue
        return text
    return None
