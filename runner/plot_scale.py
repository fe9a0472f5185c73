"""A plot axis for any finite values, 1e308 included, each shown where it lies.

matplotlib computes axis spans and margins in float64: values near float64's limit overflow there (a
report of one trial at 1e308 failed). When any value is that large, the axis shows sign(v) * log10(1 + |v|)
and labels its ticks with the values they stand for, so 1e308 and 0.5 both appear, at their places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

#: Largest magnitude plotted on a linear axis.
LINEAR_LIMIT = 1e100
#: Beyond this exponent a tick is labelled 10^x (10**x itself would overflow).
LABEL_EXPONENT_LIMIT = 300


def signed_log(value: float) -> float:
    return math.copysign(math.log10(1 + abs(value)), value)


def tick_label(position: float) -> str:
    """The value a signed-log tick stands for."""
    if abs(position) > LABEL_EXPONENT_LIMIT:
        return f"{'-' if position < 0 else ''}10^{abs(position):.4g}"
    return f"{math.copysign(10 ** abs(position) - 1, position):.3g}"


@dataclass(frozen=True)
class AxisScale:
    """Linear, or signed-log when some value is beyond LINEAR_LIMIT."""

    signed_log: bool

    @classmethod
    def for_values(cls, values: Sequence[float]) -> "AxisScale":
        return cls(any(abs(v) > LINEAR_LIMIT for v in values))

    def apply(self, values: Sequence[float]) -> list[float]:
        return [signed_log(v) for v in values] if self.signed_log else list(values)

    def label(self, name: str) -> str:
        return f"{name} (signed log scale)" if self.signed_log else name

    def configure(self, axis: Any) -> None:
        """Label a matplotlib axis's ticks with the values they stand for."""
        if self.signed_log:
            from matplotlib.ticker import FuncFormatter

            axis.set_major_formatter(FuncFormatter(lambda position, _: tick_label(position)))
