"""Typed algorithm settings: dataclasses parsed and range-checked from Katib's string pairs.

Each algorithm declares a frozen dataclass whose fields carry a `setting(...)`
spec (allowed range or choices, one-line help). `parse_settings` rejects
unknown names, bad types and out-of-range values with a message naming the
setting and what it allows. Fields marked `state=True` are written back by the
algorithm through Katib's reply.algorithm and are accepted on later calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from katib_nas.contract.errors import InvalidInput

T = TypeVar("T")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SettingsError(InvalidInput):
    """An algorithm setting that is unknown, mistyped or out of range."""


@dataclass(frozen=True)
class SettingSpec:
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    state: bool = False

    def allowed(self, kind: type) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if kind is bool:
            return "true or false"
        name = {int: "an integer", float: "a number", str: "text"}[kind]
        if self.low is not None and self.high is not None:
            return f"{name} in [{_fmt(self.low)}, {_fmt(self.high)}]"
        if self.low is not None:
            return f"{name} >= {_fmt(self.low)}"
        return name


def setting(default: Any, help: str, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] = (), state: bool = False) -> Any:
    """Declare a settings field with its default, help and allowed values."""
    spec = SettingSpec(help, low, high, tuple(choices), state)
    return dataclasses.field(default=default, metadata={"setting": spec})


def parse_settings(cls: type[T], raw: dict[str, str], algorithm: str) -> T:
    """Build `cls` from name -> string pairs; raise SettingsError naming the bad setting."""
    specs = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        known = ", ".join(name for name, f in specs.items() if not f.metadata["setting"].state)
        raise SettingsError(f"unknown setting {unknown[0]!r} for algorithm {algorithm}; known settings: {known}")
    values = {name: _convert(specs[name], text, algorithm) for name, text in raw.items()}
    return cls(**values)


def describe_settings(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, default, allowed, help) for every user-facing setting: for docs and errors."""
    rows = []
    for f in fields(cls):
        spec: SettingSpec = f.metadata["setting"]
        if not spec.state:
            rows.append((f.name, _fmt(f.default), spec.allowed(_kind(f)), spec.help))
    return rows


def _kind(f: dataclasses.Field) -> type:
    if isinstance(f.type, type):
        return f.type
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type).strip()]


def _convert(f: dataclasses.Field, text: str, algorithm: str) -> Any:
    spec: SettingSpec = f.metadata["setting"]
    kind = _kind(f)
    raw = (text or "").strip()

    def bad() -> SettingsError:
        return SettingsError(f"setting {f.name}={text!r} for algorithm {algorithm} must be {spec.allowed(kind)}")

    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise bad()
    if kind is str:
        if spec.choices and raw not in spec.choices:
            raise bad()
        return raw
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        raise bad() from None
    if value != value or (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise bad()
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
