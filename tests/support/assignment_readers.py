"""How a trial reads the assignments a suggestion proposes."""

from __future__ import annotations

from typing import Callable

from katib_nas.contract.codec import decode
from katib_nas.contract.oneshot_settings import from_text

#: How the trial side reads each assignment an algorithm may propose.
READERS: dict[str, Callable[[str], object]] = {"architecture": decode, "search": from_text, "epochs": int,
                                               "seed": int}
