"""Upper bounds of a trial's counts, shared by `katib-nas trial`'s flags and the one-shot search settings."""

from __future__ import annotations

#: Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
#: Epochs of one training (and of a one-shot search or its retraining).
MAX_EPOCHS = 1_000_000
