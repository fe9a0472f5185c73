"""Data-parallel training across processes: torch.distributed's environment, the process group, sharding.

A trial started by torchrun, a PyTorchJob or a TrainJob finds its place in the run in the environment:
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous MASTER_ADDR:MASTER_PORT. Without WORLD_SIZE (or with
WORLD_SIZE=1) the trial is one process and nothing here talks to another process. With several, every
process trains a DistributedDataParallel copy (gloo on CPU, nccl on CUDA) on its share of every global
batch, so --batch-size keeps its meaning (the global batch) and the learning-rate schedule is unchanged.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

import torch
import torch.distributed as dist
from torch import nn

from katib_nas.contract.errors import InvalidInput

#: How long a process waits for the others at the rendezvous and in any collective operation (seconds).
DEFAULT_TIMEOUT_S = 300.0
#: Processes a run may have; far above what a trial can use, low enough that no count overflows.
MAX_WORLD_SIZE = 65536
#: Every process's share of a batch must hold this many images (BatchNorm in training mode needs two).
MIN_SHARE = 2


#: Words of the errors gloo and NCCL raise when a peer's connection breaks or an exchange times out.
COMMUNICATION_WORDS = ("gloo", "NCCL", "Connection", "connection", "Timed out", "timed out")


class PeerLost(RuntimeError):
    """Another process of the run failed, left, or did not answer within the timeout."""


@dataclass(frozen=True)
class Placement:
    """Where this process stands in the run: its rank among `world_size` processes and on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, statistics, checkpoints and exports."""
        return self.rank == 0


def placement_from(environ: Mapping[str, str]) -> Placement:
    """The process's placement from torch.distributed's environment variables; InvalidInput when they are
    inconsistent or when several processes are announced without a rendezvous address."""
    world = _env_int(environ, "WORLD_SIZE", 1, 1, MAX_WORLD_SIZE)
    if not environ.get("WORLD_SIZE", "").strip():
        _check_started_by_torchrun(environ)
    if world == 1:
        return Placement()
    rank = _env_int(environ, "RANK", None, 0, world - 1)
    local_rank = _env_int(environ, "LOCAL_RANK", 0, 0, world - 1)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name, "").strip()]
    if missing:
        raise InvalidInput(f"WORLD_SIZE={world} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                           "not set: no rendezvous to meet the other processes at; start the trial with torchrun "
                           "(or a PyTorchJob or TrainJob), or set MASTER_ADDR and MASTER_PORT")
    port = _env_int(environ, "MASTER_PORT", None, 1, 65535)
    return Placement(rank, world, local_rank, f"{environ['MASTER_ADDR'].strip()}:{port}")


def _check_started_by_torchrun(environ: Mapping[str, str]) -> None:
    """Kubeflow Trainer's torch plugin sets only PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK and the master's
    address, for torchrun to read: a trial of several processes started without torchrun would train alone on
    every node, each writing the same metrics, checkpoints and exports."""
    counts = {name: environ.get(name, "").strip() for name in ("PET_NNODES", "PET_NPROC_PER_NODE")}
    if any(text.isascii() and text.isdigit() and int(text) > 1 for text in counts.values()):
        announced = " ".join(f"{name}={text}" for name, text in counts.items() if text)
        raise InvalidInput(f"{announced} announce several processes, but this one was not started by torchrun (no "
                           "WORLD_SIZE), so it would train alone; start the trial as `torchrun --no-python "
                           "katib-nas trial ...`, as the TrainJob examples do")


def _env_int(environ: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        if default is None:
            raise InvalidInput(f"{name} is not set, but WORLD_SIZE announces several processes; start the trial "
                               "with torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT")
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        raise InvalidInput(f"{name}={text[:40]!r} must be a whole number in [{low}, {high}]")
    return int(text)


TRAINING_IMAGES = ("training images", "--max-train-samples, --val-fraction")


def check_shares(placement: Placement, batch_size: int, images: int, what: str = "--batch-size",
                 kind: tuple[str, str] = TRAINING_IMAGES) -> None:
    """Every process must get at least MIN_SHARE images of every batch; InvalidInput naming the fix. `kind`
    names the images and the flags that give more of them."""
    batch, needed = min(batch_size, images), placement.world_size * MIN_SHARE
    if images < needed:  # no --batch-size helps: the images are too few
        raise InvalidInput(f"only {images} {kind[0]} here, fewer than the {needed} a batch needs ({MIN_SHARE} for "
                           f"each of {placement.world_size} processes): give the trial more images ({kind[1]})")
    if needed > batch:
        raise InvalidInput(f"{what} {batch_size} ({batch} images a batch here) gives each of {placement.world_size} "
                           f"processes fewer than {MIN_SHARE} images: raise {what} to at least "
                           f"{placement.world_size * MIN_SHARE} or run at most {batch // MIN_SHARE} processes")


class Parallel:
    """The collective operations a data-parallel trial uses; each is a no-op for a single process."""

    def __init__(self, placement: Placement = Placement(), device: torch.device = torch.device("cpu")):
        self.placement = placement
        self.device = device

    @property
    def world_size(self) -> int:
        return self.placement.world_size

    @property
    def is_main(self) -> bool:
        return self.placement.is_main

    def share(self, index: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of a global batch of indices (parts differ in size by at most one)."""
        if not self.placement.active:
            return index
        return index.tensor_split(self.world_size)[self.placement.rank]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over all processes (a new tensor; the argument is left as it is)."""
        if not self.placement.active:
            return tensor
        total = tensor.detach().clone()
        self._collective(dist.all_reduce, total)
        return total

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as DistributedDataParallel trains it. Buffers are not broadcast on every forward pass:
        BatchNorm statistics are recalibrated and then made equal before any evaluation, and the branch
        statistics each process accumulates are averaged at the end (`average_statistics`)."""
        if not self.placement.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def average_gradients(self, parameters: list[torch.Tensor]) -> None:
        """Average the gradients present (the same parameters on every process) in one all-reduce."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not self.placement.active or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._collective(dist.all_reduce, flat)
        flat /= self.world_size
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))

    def average_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor in place by its mean over all processes."""
        if not self.placement.active:
            return
        for tensor in tensors:
            self._collective(dist.all_reduce, tensor)
            tensor /= self.world_size

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics among them) on every process."""
        if not self.placement.active:
            return
        for buffer in model.buffers():
            self._collective(dist.broadcast, buffer, 0)

    def average_statistics(self, model: nn.Module) -> None:
        """Average the floating-point buffers a state_dict leaves out: the statistics that every process
        accumulated over its own share of the batches (the branch statistics of envelope cells)."""
        saved = set(model.state_dict())
        self.average_tensors([b for name, b in model.named_buffers()
                              if name not in saved and b.is_floating_point()])

    def broadcast_bytes(self, payload: bytes) -> bytes:
        """Rank 0's bytes on every process (other ranks pass b"")."""
        if not self.placement.active:
            return payload
        size = torch.tensor([len(payload)], dtype=torch.long, device=self.device)
        self._collective(dist.broadcast, size, 0)
        if int(size) == 0:
            return b""
        data = torch.zeros(int(size), dtype=torch.uint8, device=self.device)
        if self.is_main:
            data.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
        self._collective(dist.broadcast, data, 0)
        return bytes(data.cpu().numpy().tobytes())

    def broadcast_state(self, state: dict | None) -> dict | None:
        """A dictionary of tensors and plain values from rank 0 on every process (serialised by torch.save,
        read back with weights_only=True)."""
        if not self.placement.active:
            return state
        payload = b""
        if self.is_main and state is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            payload = buffer.getvalue()
        received = self.broadcast_bytes(payload)
        return torch.load(io.BytesIO(received), weights_only=True) if received else None

    def lost(self, err: BaseException) -> PeerLost | None:
        """The PeerLost an error raised inside training stands for (DistributedDataParallel's exchanges run
        in backward and fail with the backend's RuntimeError); None when it is no communication failure."""
        if isinstance(err, PeerLost):
            return err
        if not self.placement.active or not isinstance(err, RuntimeError):
            return None
        text = str(err)
        if isinstance(err, dist.DistError) or any(word in text for word in COMMUNICATION_WORDS):
            return PeerLost(lost_peer_message(self.placement, err))
        return None

    def _collective(self, operation, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            operation(*args)
        except (RuntimeError, dist.DistError) as err:
            raise PeerLost(lost_peer_message(self.placement, err)) from None


def lost_peer_message(placement: Placement, err: BaseException) -> str:
    """One line for a failed collective operation."""
    detail = " ".join(str(err).split()[:24])[:200]
    return (f"rank {placement.rank} of {placement.world_size}: another process of the run failed or stopped "
            f"answering ({detail})")


def start(placement: Placement, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Parallel:
    """Join the process group (gloo on CPU, nccl on CUDA, on the device of LOCAL_RANK); a Parallel that does
    nothing for a single process. PeerLost when the other processes do not arrive within `timeout_s`."""
    if not placement.active:
        return Parallel(placement, device)
    if device.type == "cuda":
        device = torch.device("cuda", placement.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    host, port = placement.master.rsplit(":", 1)
    try:
        dist.init_process_group(backend, init_method=f"tcp://{_bracketed(host)}:{port}", rank=placement.rank,
                                world_size=placement.world_size, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, dist.DistError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise PeerLost(f"rank {placement.rank} of {placement.world_size}: the processes did not all meet at the "
                       f"rendezvous {placement.master} within {timeout_s:g} s ({detail})") from None
    return Parallel(placement, device)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def stop(parallel: Parallel, finished: bool = False) -> None:
    """Leave the process group (nothing for a single process). After a run that `finished` on this process,
    first wait until every process has finished too (rank 0 reports after training while the others are
    done), so that the processes leave the group together; a peer that failed ends that wait at once."""
    if not (parallel.placement.active and dist.is_initialized()):
        return
    if finished:
        try:
            dist.barrier()
        except (RuntimeError, dist.DistError):
            pass  # a peer failed or left: it reports its own error
    dist.destroy_process_group()


def environment_placement() -> Placement:
    """placement_from(os.environ)."""
    return placement_from(os.environ)
