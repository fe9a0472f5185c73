"""A trial's counts: their upper bounds, shared by `katib-nas trial`'s flags and the one-shot search settings, and
the epochs of a winner's final training (the pipeline's default, and the command a report proposes)."""

from __future__ import annotations

#: Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
#: Epochs of one training (and of a one-shot search or its retraining).
MAX_EPOCHS = 1_000_000
#: Epochs of the final training of a search's best network (on its trials' data, without their image cap).
FINAL_EPOCHS = 10
