"""The compact search-settings text a ProxylessNAS one-shot trial receives as an assignment.

Form: `key-value` pairs joined by `_`, e.g.
`epochs-12_warmup-2_loss-mullog_target-1.5_beta-0.6_lambda-0.1_archlr-0.006_retrain-0_seed-0`.
Only letters, digits, `-`, `_` and `.` appear, so the text survives Katib's
substitution into a command line. The suggestion writes it; the trial parses it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from .errors import InvalidInput
from .trial_bounds import MAX_EPOCHS, MAX_SEED

LOSS_FORMS = ("mullog", "addlin", "none")


@dataclass(frozen=True)
class SearchConfig:
    """Budget and loss of one-shot supernet training; latency targets in milliseconds (0 = none)."""

    epochs: int = 12
    warmup: int = 2
    loss: str = "mullog"
    target: float = 0.0
    beta: float = 0.6
    lambda_: float = 0.1
    archlr: float = 0.006
    retrain: int = 0
    seed: int = 0

    def check(self) -> "SearchConfig":
        for name in ("target", "beta", "lambda_", "archlr"):  # nan passes every comparison below
            if not math.isfinite(getattr(self, name)):
                raise InvalidInput(f"search settings: {_key(name)}={getattr(self, name)} must be a finite number")
        for name, high in (("epochs", MAX_EPOCHS), ("retrain", MAX_EPOCHS), ("seed", MAX_SEED)):
            if getattr(self, name) > high:
                raise InvalidInput(f"search settings: {name}={getattr(self, name)} must be at most {high}")
        if not 0 <= self.warmup < self.epochs:  # so epochs >= 1
            raise InvalidInput(f"search settings: need epochs >= 1 and 0 <= warmup < epochs, got epochs={self.epochs} "
                               f"warmup={self.warmup}")
        if self.loss not in LOSS_FORMS:
            raise InvalidInput(f"search settings: loss {self.loss!r} must be one of {', '.join(LOSS_FORMS)}")
        if self.target < 0 or self.beta < 0 or self.lambda_ < 0 or self.archlr <= 0 or self.retrain < 0 \
                or self.seed < 0:
            raise InvalidInput("search settings: target, beta, lambda, retrain and seed must be >= 0 and archlr > 0")
        if self.loss == "mullog" and 0 < self.target * 1000.0 <= 1.0:
            raise InvalidInput("search settings: the mullog loss needs a target above 0.001 ms")
        return self

    @property
    def hardware_aware(self) -> bool:
        return self.loss != "none" and self.target > 0


def _key(name: str) -> str:
    return name.rstrip("_")


def to_text(config: SearchConfig) -> str:
    """The assignment text of a config."""
    config.check()
    parts = []
    for f in fields(config):
        value = getattr(config, f.name)
        parts.append(f"{_key(f.name)}-{value:g}" if isinstance(value, float) else f"{_key(f.name)}-{value}")
    return "_".join(parts)


def from_text(text: str) -> SearchConfig:
    """Parse the assignment text; InvalidInput names the bad pair. Missing keys keep their defaults."""
    by_key = {_key(f.name): f for f in fields(SearchConfig)}
    values: dict[str, object] = {}
    for pair in filter(None, text.split("_")):
        key, sep, raw = pair.partition("-")
        if not sep or key not in by_key:
            raise InvalidInput(f"search settings: bad pair {pair!r}; expected key-value with key one of "
                               f"{', '.join(by_key)}")
        f = by_key[key]
        if f.name in values:
            raise InvalidInput(f"search settings: {key} is given twice")
        kind = type(f.default)
        try:
            values[f.name] = kind(raw) if kind is not int else int(raw)
        except ValueError:
            raise InvalidInput(f"search settings: {key}={raw!r} must be {kind.__name__}") from None
    return dataclasses.replace(SearchConfig(), **values).check()
