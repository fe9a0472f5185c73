"""Per-epoch checkpoints of a training run, and resuming from one.

After every epoch rank 0 writes DIR/checkpoint.pt (weights, optimiser, learning-rate schedule, batch
order, position, the epochs' results) to a temporary file and renames it over the previous one, so a
pod killed at any moment leaves either the old or the new checkpoint whole. A run started with the
same DIR continues from it, losing at most the epoch in progress. Rank 0 reads the file (torch.load with
weights_only=True) and hands it to the other processes. A checkpoint of another network, or written with
other training settings, is refused before any training and left as it is.
"""

from __future__ import annotations

import io
import logging
import pickle
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from katib_nas.contract.errors import InvalidInput

from .distributed import Parallel
from .durable import replace_whole
from .inputs import check_output_dir
from .trainer import EpochReport, EpochResult, TrainState

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1
LOG = logging.getLogger("katib_nas.trial_image")
#: What torch.load raises for a file that is not a checkpoint it may read.
READ_ERRORS = (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (the run stops: it could not be resumed as promised)."""


def check_checkpoint_dir(path: Path) -> None:
    """--checkpoint-dir must be a writable directory (created here) whose checkpoint name is free for a file."""
    check_output_dir(path, "--checkpoint-dir", "for checkpoints", [CHECKPOINT_FILE])


class Checkpoint:
    """The checkpoint of one run: `load` before training (all processes), then `restore` and `save` as
    the trainer's Checkpointer."""

    def __init__(self, directory: Path, model: nn.Module, identity: Mapping[str, Any], parallel: Parallel):
        self.path = directory / CHECKPOINT_FILE
        self.model = model
        self.identity = dict(identity)
        self.parallel = parallel
        self.loaded: dict[str, Any] | None = None

    def load(self) -> bool:
        """Read the checkpoint if there is one and put its weights into the model; True when resuming.
        InvalidInput, on every process, when it belongs to another run or cannot be read."""
        message: dict[str, Any] | None = None
        if self.parallel.is_main:
            message = self._read()
        message = self.parallel.broadcast_state(message)
        if message is not None and "error" in message:
            raise InvalidInput(message["error"])
        self.loaded = message
        if message is not None:
            self.model.load_state_dict(message["model"])
        return message is not None

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except READ_ERRORS as err:
            detail = " ".join(str(err).split())[:160]
            return {"error": f"cannot read checkpoint {self.path} ({detail}); it is left as it is: delete it to "
                             "start over, or pass another --checkpoint-dir"}
        problem = self._mismatch(payload)
        return {"error": problem} if problem else payload

    def _mismatch(self, payload: Any) -> str:
        """Why `payload` cannot continue this run ("" when it can)."""
        keep = "; it is left as it is: pass another --checkpoint-dir, or delete it to start over"
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            return f"{self.path} is not a katib-nas checkpoint (format {FORMAT}){keep}"
        stored = payload.get("identity") or {}
        if stored.get("architecture") != self.identity["architecture"]:
            return (f"checkpoint {self.path} was written for architecture {str(stored.get('architecture'))[:120]}, "
                    f"not {self.identity['architecture'][:120]}{keep}")
        for name, value in self.identity.items():
            if stored.get(name) != value:
                return f"checkpoint {self.path} was written with {name} {stored.get(name)}, not {value}{keep}"
        return ""

    def restore(self, state: TrainState) -> None:
        """Put the loaded optimiser, schedule, scaler, batch order and position into `state`."""
        if self.loaded is None:
            return
        loaded = self.loaded
        state.optimizer.load_state_dict(loaded["optimizer"])
        state.schedule.load_state_dict(loaded["schedule"])
        state.scaler.load_state_dict(loaded["scaler"])
        state.generator.set_state(loaded["generator"])
        state.step, state.epoch = int(loaded["step"]), int(loaded["epoch"])
        state.results = [EpochResult(int(e), int(s), float(loss), float(acc)) for e, s, loss, acc in loaded["results"]]
        state.reports = [EpochReport(str(stamp), {str(name): float(value) for name, value in metrics.items()}, int(s))
                         for stamp, metrics, s in loaded.get("reports", [])]
        LOG.info("resuming from %s after epoch %d (step %d)", self.path, state.epoch, state.step)
        self.loaded = None

    def save(self, state: TrainState) -> None:
        """Rank 0 writes the state after an epoch: a temporary file renamed over the checkpoint."""
        if not self.parallel.is_main:
            return
        payload = {
            "format": FORMAT, "identity": self.identity, "model": self.model.state_dict(),
            "optimizer": state.optimizer.state_dict(), "schedule": state.schedule.state_dict(),
            "scaler": state.scaler.state_dict(), "generator": state.generator.get_state(),
            "step": state.step, "epoch": state.epoch,
            "results": [[r.epoch, r.steps, r.train_loss, r.train_accuracy] for r in state.results],
            "reports": [[r.stamp, r.metrics, r.steps] for r in state.reports],
        }
        started = time.perf_counter()
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        try:
            replace_whole(self.path, buffer.getbuffer())
        except OSError as err:
            raise CheckpointError(f"cannot write checkpoint {self.path}: {err.strerror or err}") from None
        LOG.info("checkpoint of epoch %d written in %.3f s (%d bytes)", state.epoch, time.perf_counter() - started,
                 buffer.getbuffer().nbytes)
