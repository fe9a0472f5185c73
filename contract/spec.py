"""Architecture spec: the one description of a candidate network shared by every side.

A network is a stem, then stages. Each stage starts with a widener (1x1
projection to the stage width, then a stride-2 reduction when the stage's
stride is 2) followed by cells that keep the stage's width and resolution.
A cell holds one or more ops: either parallel branches whose outputs are
concatenated (an envelope cell) or alternatives of which one is active (a
supernet block). A cell may add its input back (residual) and take gated
skip inputs from earlier cells, numbered across the whole network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidInput, shown

# op kind -> (token prefix, takes a kernel, meaning of `mult` or "" if unused)
OP_KINDS: dict[str, tuple[str, bool, str]] = {
    "conv": ("c", True, ""),
    "dilconv": ("dc", True, ""),
    "sepconv": ("s", True, "depth multiplier"),
    "dwconv": ("d", True, "depth multiplier"),
    "maxpool": ("mp", True, ""),
    "avgpool": ("ap", True, ""),
    "mbconv": ("mb", True, "expand ratio"),
    "identity": ("id", False, ""),
    "zero": ("zero", False, ""),
}

# Limits of a valid architecture. Every side checks them through Architecture.validate (the codec on
# encode and decode), and the suggestion's search space refuses a nasConfig beyond them, so anything the
# suggestion emits is read back by the trial. Each fits in the codec's six digits.
MAX_KERNEL = 11
MAX_MULT = 8
MAX_WIDTH = 4096
MAX_INPUT_SIDE = 4096
MAX_INPUT_CHANNELS = 4096
MAX_CLASSES = 100_000
MAX_CELLS = 1024


class ArchitectureError(InvalidInput):
    """An architecture that is structurally invalid or cannot be built."""


@dataclass(frozen=True)
class Op:
    """One operation: kind, kernel size and multiplier (expand ratio for mbconv)."""

    kind: str
    kernel: int = 0
    mult: int = 1

    def check(self) -> None:
        if self.kind not in OP_KINDS:
            raise ArchitectureError(f"unknown op kind {shown(self.kind)}; known: {', '.join(OP_KINDS)}")
        _, has_kernel, mult_meaning = OP_KINDS[self.kind]
        if has_kernel and not 1 <= self.kernel <= MAX_KERNEL:
            raise ArchitectureError(f"op {self.kind}: kernel {self.kernel} outside 1..{MAX_KERNEL}")
        if not has_kernel and self.kernel != 0:
            raise ArchitectureError(f"op {self.kind} takes no kernel, got {self.kernel}")
        if mult_meaning and not 1 <= self.mult <= MAX_MULT:
            raise ArchitectureError(f"op {self.kind}: {mult_meaning} {self.mult} outside 1..{MAX_MULT}")
        if not mult_meaning and self.mult != 1:
            raise ArchitectureError(f"op {self.kind} takes no multiplier, got {self.mult}")


@dataclass(frozen=True)
class Cell:
    """A set of ops at one position: concatenated branches, or alternatives when `choice`."""

    ops: tuple[Op, ...]
    choice: bool = False
    residual: bool = False
    skips: tuple[int, ...] = ()


@dataclass(frozen=True)
class Stage:
    """Cells sharing one width and resolution, entered through a widener."""

    width: int
    stride: int
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Architecture:
    """A whole candidate network; input_shape is (height, width, channels)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    stem: int
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    @property
    def cells(self) -> list[Cell]:
        """All cells in network order; skip indices refer to positions in this list."""
        return [cell for stage in self.stages for cell in stage.cells]

    def stage_of_cells(self) -> list[int]:
        """Stage index of every cell, in network order."""
        return [s for s, stage in enumerate(self.stages) for _ in stage.cells]

    def validate(self) -> "Architecture":
        """Check structure and buildability; returns self so it can be chained."""
        height, width, channels = self.input_shape
        if min(height, width, channels) < 1:
            raise ArchitectureError(f"input shape {self.input_shape} must be positive")
        if max(height, width) > MAX_INPUT_SIDE or channels > MAX_INPUT_CHANNELS:
            raise ArchitectureError(f"input shape {self.input_shape} must be at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}"
                                    f"x{MAX_INPUT_CHANNELS}")
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise ArchitectureError(f"num_classes {self.num_classes} must be in [2, {MAX_CLASSES}]")
        if not 1 <= self.stem <= MAX_WIDTH:
            raise ArchitectureError(f"stem width {self.stem} must be in [1, {MAX_WIDTH}]")
        if not self.stages:
            raise ArchitectureError("an architecture needs at least one stage")
        cells = sum(len(stage.cells) for stage in self.stages)
        if cells > MAX_CELLS:
            raise ArchitectureError(f"the architecture has {cells} cells, more than {MAX_CELLS}")
        index = 0
        for s, stage in enumerate(self.stages):
            if not 1 <= stage.width <= MAX_WIDTH:
                raise ArchitectureError(f"stage {s}: width {stage.width} must be in [1, {MAX_WIDTH}]")
            if stage.stride not in (1, 2):
                raise ArchitectureError(f"stage {s}: stride {stage.stride} must be 1 or 2")
            if not stage.cells:
                raise ArchitectureError(f"stage {s} has no cells")
            for cell in stage.cells:
                _check_cell(cell, index, stage.width)
                index += 1
        _check_resolution(self)
        return self

    def spatial_sizes(self) -> list[tuple[int, int]]:
        """Feature-map size (height, width) inside every stage."""
        height, width, _ = self.input_shape
        sizes = []
        for stage in self.stages:
            if stage.stride == 2:
                height, width = height // 2, width // 2
            sizes.append((height, width))
        return sizes


def branch_widths(width: int, branches: int) -> list[int]:
    """Split a cell width over concatenated branches; earlier branches take the remainder."""
    base, extra = divmod(width, branches)
    return [base + (1 if i < extra else 0) for i in range(branches)]


def _check_cell(cell: Cell, index: int, width: int) -> None:
    where = f"cell {index}"
    if not cell.ops:
        raise ArchitectureError(f"{where} has no ops")
    for op in cell.ops:
        try:
            op.check()
        except ArchitectureError as err:
            raise ArchitectureError(f"{where}: {err}") from None
    if cell.choice and len(cell.ops) < 2:
        raise ArchitectureError(f"{where}: a choice cell needs at least two alternatives")
    if not cell.choice and len(cell.ops) > width:
        raise ArchitectureError(f"{where}: {len(cell.ops)} branches do not fit in width {width}")
    if list(cell.skips) != sorted(set(cell.skips)):
        raise ArchitectureError(f"{where}: skip inputs {list(cell.skips)} must be sorted and unique")
    for source in cell.skips:
        if index == 0:
            raise ArchitectureError(f"{where}: the first cell cannot take skip inputs")
        if not 0 <= source < index:
            raise ArchitectureError(f"{where}: skip input {source} must come from an earlier cell (0..{index - 1})")


def _check_resolution(arch: Architecture) -> None:
    for s, (height, width) in enumerate(arch.spatial_sizes()):
        if height < 1 or width < 1:
            raise ArchitectureError(
                f"stage {s}: spatial size falls to {height}x{width} "
                f"(input {arch.input_shape[0]}x{arch.input_shape[1]} allows at most "
                f"{max_reductions(arch.input_shape)} stride-2 stages)"
            )


def max_reductions(input_shape: tuple[int, int, int]) -> int:
    """How many stride-2 stages an input of this size can take before reaching zero."""
    size = min(input_shape[0], input_shape[1])
    count = 0
    while size // 2 >= 1:
        size //= 2
        count += 1
    return count
