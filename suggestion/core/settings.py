"""Typed algorithm settings: dataclasses parsed and range-checked from Katib's string pairs.

Each algorithm declares a frozen dataclass whose fields carry a `setting(...)`
spec (allowed range or choices, one-line help). `parse_settings` rejects
unknown names, bad types and out-of-range values with a message naming the
setting and what it allows. Fields marked `state=True` are written back by the
algorithm through Katib's reply.algorithm and are accepted on later calls.

Numbers are read by one strict reader for every setting, list setting and
nasConfig value: ASCII digits only (Python's int() and float() also take
other scripts' digits and `1_000`), a bounded number of characters, finite
values. A setting named twice is refused rather than last-wins.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, TypeVar

from katib_nas.contract.errors import InvalidInput

T = TypeVar("T")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: An integer as Katib's Go code writes it: optional sign, ASCII digits; 18 digits always fit in int64.
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
#: A decimal number in ASCII, with an optional exponent (no nan, inf, hex or underscores).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?")
#: Longest setting value read; every setting of every algorithm is far shorter.
MAX_SETTING_CHARS = 1024


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


def read_int(text: str) -> int | None:
    """The integer `text` holds (ASCII digits, optional sign, surrounding spaces ignored), or None."""
    raw = text.strip()
    return int(raw) if _INTEGER.fullmatch(raw) else None


def read_float(text: str) -> float | None:
    """The finite number `text` holds (ASCII decimal notation, surrounding spaces ignored), or None."""
    raw = text.strip()
    if not _DECIMAL.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def parse_int(text: str, where: str, low: int, high: int, error: type[InvalidInput] = SettingsError) -> int:
    """An integer in [low, high] read strictly; `error` names `where` and the range otherwise."""
    value = read_int(text) if isinstance(text, str) else None
    if value is None:
        raise error(f"{where}={_quoted(text)} must be an integer")
    if not low <= value <= high:
        raise error(f"{where}={value} must be in [{low}, {high}]")
    return value


def parse_int_list(text: str, where: str, low: int, high: int, max_items: int, unique: bool = False,
                   error: type[InvalidInput] = SettingsError) -> tuple[int, ...]:
    """Comma-separated integers in [low, high], at most `max_items` (and distinct when `unique`)."""
    if text.count(",") >= max_items:
        raise error(f"{where}={_quoted(text)} lists more than {max_items} values")
    values = []
    for part in text.split(","):
        value = read_int(part)
        if value is None:
            raise error(f"{where}={_quoted(text)} must be integers separated by commas, e.g. 16,32,64")
        if not low <= value <= high:
            raise error(f"{where}={_quoted(text)}: value {value} outside [{low}, {high}]")
        if unique and value in values:
            raise error(f"{where}={_quoted(text)} lists {value} more than once")
        values.append(value)
    return tuple(values)


def settings_from_pairs(pairs: Iterable[tuple[str, str]], algorithm: str) -> dict[str, str]:
    """name -> value of Katib's algorithmSettings list; a name given twice is refused, not last-wins."""
    settings: dict[str, str] = {}
    for name, value in pairs:
        if name in settings:
            raise SettingsError(f"setting {_quoted(name)} for algorithm {algorithm} is given more than once "
                                f"({_quoted(settings[name])} and {_quoted(value)}); give it once")
        settings[name] = value
    return settings


def parse_settings(cls: type[T], raw: dict[str, str], algorithm: str) -> T:
    """Build `cls` from name -> string pairs; raise SettingsError naming the bad setting."""
    specs = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        known = ", ".join(name for name, f in specs.items() if not f.metadata["setting"].state)
        raise SettingsError(f"unknown setting {_quoted(unknown[0])} for algorithm {algorithm}; known settings: "
                            f"{known}")
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
        return SettingsError(f"setting {f.name}={_quoted(text)} for algorithm {algorithm} must be "
                             f"{spec.allowed(kind)}")

    if len(raw) > MAX_SETTING_CHARS:
        raise SettingsError(f"setting {f.name} for algorithm {algorithm} is {len(raw)} characters long, more than "
                            f"{MAX_SETTING_CHARS}")
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
    value = read_int(raw) if kind is int else read_float(raw)
    if value is None or (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise bad()
    return value


def _quoted(text: object) -> str:
    """repr of a value for a message, shortened so that a huge value cannot make a huge message."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:60] + f"...' ({len(str(text))} characters)"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
