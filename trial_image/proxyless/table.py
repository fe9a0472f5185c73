"""Latency lookup tables: one JSON file per target device, read by the one-shot search.

Keys name a layer at a position of the network (every key ends with the input
resolution and the input/output channels):

    stem:28x28:1-16                 3x3 stem conv + BN + ReLU on the input
    widen:28x28:16-32:s2            a stage's widener (1x1 conv when widths differ, 2x2 max pool for s2)
    block:mb3e6@r:14x14:32-32:s1    a searchable block with one op (residual add included)
    head:7x7:64-10                  global average pool + linear classifier

Values are median milliseconds of one forward pass at the table's batch size
and thread count. The predicted latency of a network is the sum of its
entries; the predictor refuses a table that lacks any entry the network (or
supernet) needs, listing the missing keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib_nas.contract.codec import encode_cell, encode_op
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture, Cell

from ..durable import replace_whole

FORMAT = "katib-nas-latency-table/1"
SHOWN_MISSING = 12


class LatencyTableError(InvalidInput):
    """A latency table that cannot be read or lacks entries the network needs."""


@dataclass(frozen=True)
class LatencyTable:
    """Median milliseconds per layer position, with how they were measured."""

    entries: dict[str, float]
    device: str = "cpu"
    batch_size: int = 1
    threads: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "device": self.device, "batch_size": self.batch_size, "threads": self.threads,
                "unit": "ms", "meta": self.meta, "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | Path) -> None:
        """Write the table: to a temporary file beside `path`, renamed over it, so a reader (or a failed write)
        finds the old table or the new one whole. OSError when it cannot be written."""
        replace_whole(Path(path), (json.dumps(self.to_json(), indent=1) + "\n").encode("utf-8"))

    def require(self, keys: list[str], what: str) -> None:
        """LatencyTableError listing the keys of `keys` the table lacks."""
        missing = [k for k in dict.fromkeys(keys) if k not in self.entries]
        if missing:
            shown = ", ".join(missing[:SHOWN_MISSING]) + (f" and {len(missing) - SHOWN_MISSING} more"
                                                         if len(missing) > SHOWN_MISSING else "")
            raise LatencyTableError(f"latency table lacks {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} "
                                    f"{what} needs: {shown}; profile it with `katib-nas profile`")

    def predict_ms(self, arch: Architecture) -> float:
        """Sum of the entries of a network whose cells each have one op."""
        keys = network_keys(arch)
        self.require(keys, "the network")
        return sum(self.entries[k] for k in keys)

    def fixed_ms(self, arch: Architecture) -> float:
        """Stem, wideners and head: the layers every network of a supernet has."""
        keys = fixed_keys(arch)
        self.require(keys, "the network")
        return sum(self.entries[k] for k in keys)

    def block_options_ms(self, supernet: Architecture) -> list[list[float]]:
        """Per searchable block, the latency of each candidate op in order."""
        self.require(supernet_keys(supernet), "the supernet")
        return [[self.entries[k] for k in keys] for keys in block_option_keys(supernet)]


def load_table(path: str | Path) -> LatencyTable:
    """Read and check a table file (e.g. a ConfigMap mounted in the trial)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LatencyTableError(f"latency table {path} not found; create it with `katib-nas profile`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LatencyTableError(f"latency table {path} is not readable JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        raise LatencyTableError(f"latency table {path} is not a {FORMAT} file (needs 'format' and 'entries')")
    entries = {}
    for key, value in data["entries"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise LatencyTableError(f"latency table {path}: entry {key!r} = {value!r} must be milliseconds >= 0")
        entries[str(key)] = float(value)
    try:
        batch, threads = int(data.get("batch_size", 1)), int(data.get("threads", 1))
    except (TypeError, ValueError):
        raise LatencyTableError(f"latency table {path}: batch_size and threads must be integers") from None
    return LatencyTable(entries, str(data.get("device", "cpu")), batch, threads, dict(data.get("meta") or {}))


def stem_key(arch: Architecture) -> str:
    height, width, channels = arch.input_shape
    return f"stem:{height}x{width}:{channels}-{arch.stem}"


def widen_key(size: tuple[int, int], in_channels: int, out_channels: int, stride: int) -> str:
    return f"widen:{size[0]}x{size[1]}:{in_channels}-{out_channels}:s{stride}"


def block_key(cell: Cell, size: tuple[int, int], width: int) -> str:
    """Key of a one-op cell (skip inputs are not part of a supernet block)."""
    token = encode_cell(Cell((cell.ops[0],), residual=cell.residual))
    return f"block:{token}:{size[0]}x{size[1]}:{width}-{width}:s1"


def head_key(size: tuple[int, int], channels: int, classes: int) -> str:
    return f"head:{size[0]}x{size[1]}:{channels}-{classes}"


def fixed_keys(arch: Architecture) -> list[str]:
    """Stem, one widener per stage (input resolution before its pooling) and the head."""
    keys = [stem_key(arch)]
    size, channels = arch.input_shape[:2], arch.stem
    for stage, stage_size in zip(arch.stages, arch.spatial_sizes()):
        keys.append(widen_key(size, channels, stage.width, stage.stride))
        size, channels = stage_size, stage.width
    keys.append(head_key(size, channels, arch.num_classes))
    return keys


def block_option_keys(arch: Architecture) -> list[list[str]]:
    """Per cell, the key of each of its ops as a one-op cell at that position."""
    rows = []
    for stage, size in zip(arch.stages, arch.spatial_sizes()):
        for cell in stage.cells:
            if cell.skips or (not cell.choice and len(cell.ops) != 1):
                raise LatencyTableError("the latency table covers single-op and choice cells without skip inputs; "
                                        f"cell {encode_op(cell.ops[0])}... does not fit")
            rows.append([block_key(Cell((op,), residual=cell.residual), size, stage.width) for op in cell.ops])
    return rows


def network_keys(arch: Architecture) -> list[str]:
    return fixed_keys(arch) + [row[0] for row in block_option_keys(arch)]


def supernet_keys(arch: Architecture) -> list[str]:
    """Every key any network derived from this supernet needs."""
    return fixed_keys(arch) + [key for row in block_option_keys(arch) for key in row]
