"""Training and evaluation: SGD with Nesterov momentum, per-step cosine learning rate, weight decay.

The loop keeps running sums on the device and checks them for NaN/inf only
every `check_every` steps and at epoch ends, so there is no host
synchronisation per step. On CUDA it trains in mixed precision; the trial
passes channels_last tensors on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .batchnorm_act import recomputing
from .distributed import MIN_SHARE, Parallel
from .inputs import DEFAULTS
from .optimizers import CosineSchedule, NesterovSGD

#: One process: every collective operation of Parallel is a no-op.
SINGLE = Parallel()


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings; `steps`, when given, replaces `epochs`."""

    epochs: int = 1
    steps: int | None = None
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = DEFAULTS.weight_decay
    momentum: float = 0.9
    seed: int = 0
    check_every: int = 25


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float


@dataclass(frozen=True)
class EpochReport:
    """An epoch's metrics group as reported: its timestamp (RFC 3339), values and the step it ended at.
    Checkpoints keep them, so a resumed run reports its restored epochs again."""

    stamp: str
    metrics: dict[str, float]
    steps: int


class EpochReporter(Protocol):
    """Measures and reports every epoch, and reports again the epochs a checkpoint restored (a restarted
    trial's metrics file starts empty and its stdout is new)."""

    def measure(self, result: EpochResult) -> EpochReport: ...

    def report(self, report: EpochReport, restored: bool) -> None: ...


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, first_step: int, last_step: int, what: str = ""):
        self.epoch, self.first_step, self.last_step = epoch, first_step, last_step
        where = what or f"the loss became NaN or infinite in epoch {epoch} between steps {first_step} and {last_step}"
        super().__init__(f"training diverged: {where}; lower --lr or check the data")


def finite_validation_loss(loss: float, epoch: int) -> float:
    """`loss`, or Diverged when it is NaN or infinite: the trial prints either as `nan`, which Katib's
    collectors do not read as a number (its default regex stores an empty value)."""
    if not math.isfinite(loss):
        raise Diverged(epoch, 0, 0, f"the validation loss after epoch {epoch} is {loss}")
    return loss


@dataclass
class Tensors:
    """Training and validation tensors already on the training device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def batches_per_epoch(count: int, batch_size: int, processes: int = 1) -> int:
    """Whole batches plus a final partial one when each of `processes` gets at least two of its samples
    (BatchNorm needs two)."""
    size = min(batch_size, count)
    full, rest = divmod(count, size)
    return full + (1 if rest >= MIN_SHARE * processes else 0)


def total_steps(count: int, config: TrainConfig, processes: int = 1) -> int:
    if config.steps is not None:
        return config.steps
    return config.epochs * batches_per_epoch(count, config.batch_size, processes)


def epoch_batches(count: int, batch_size: int, generator: torch.Generator, device: torch.device,
                  processes: int = 1) -> Iterator[torch.Tensor]:
    """Index tensors of one shuffled epoch (global batches: every process draws the same order)."""
    size = min(batch_size, count)
    order = torch.randperm(count, generator=generator).to(device)
    for b in range(batches_per_epoch(count, batch_size, processes)):
        yield order[b * size:(b + 1) * size]


def make_optimizer(model: nn.Module, config: TrainConfig, steps: int) -> tuple[NesterovSGD, CosineSchedule]:
    optimizer = NesterovSGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                            weight_decay=config.weight_decay)
    return optimizer, CosineSchedule(optimizer, max(steps, 1))


@dataclass
class TrainState:
    """What a resumed run needs besides the weights: optimiser, schedule, loss scaler, batch order, the
    position reached and the epochs done."""

    optimizer: NesterovSGD
    schedule: CosineSchedule
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    step: int = 0
    epoch: int = 0
    results: list[EpochResult] = field(default_factory=list)
    reports: list[EpochReport] = field(default_factory=list)


class Checkpointer(Protocol):
    """Restores a run's state before training and saves it after every epoch."""

    def restore(self, state: TrainState) -> None: ...

    def save(self, state: TrainState) -> None: ...


def train(model: nn.Module, data: Tensors, config: TrainConfig,
          reporter: EpochReporter | None = None,
          before_step: Callable[[int, int], None] = lambda step, steps: None,
          parallel: Parallel = SINGLE, checkpoint: Checkpointer | None = None) -> list[EpochResult]:
    """Train in place for the configured budget; raises Diverged on a non-finite loss.

    `before_step(step, steps)` runs before optimizer step `step` (0-based) of `steps`, e.g. to start
    recording statistics for the last part of the run. With several processes `model` is the
    DistributedDataParallel wrapper, each process takes its share of every global batch and the epoch's
    loss and accuracy are summed over all of them. `reporter` measures every epoch; `checkpoint` restores the
    state (with the restored epochs' reports, which are reported again first) before the first step and saves
    it after every epoch, with that epoch's report, before the report is written.
    """
    device = data.train_x.device
    steps = total_steps(len(data.train_y), config, parallel.world_size)
    optimizer, schedule = make_optimizer(model, config, steps)
    state = TrainState(optimizer, schedule, torch.amp.GradScaler("cuda", enabled=device.type == "cuda"),
                       torch.Generator().manual_seed(config.seed))
    if checkpoint is not None:
        checkpoint.restore(state)
    if reporter is not None:
        for restored in state.reports:
            reporter.report(restored, restored=True)
    model.train()
    while state.step < steps:
        state.epoch += 1
        result = _train_epoch(model, data, config, state, steps, before_step, parallel)
        state.results.append(result)
        if reporter is not None:
            state.reports.append(reporter.measure(result))
        if checkpoint is not None:
            checkpoint.save(state)
        if reporter is not None:
            reporter.report(state.reports[-1], restored=False)
    return state.results


def _train_epoch(model: nn.Module, data: Tensors, config: TrainConfig, state: TrainState, steps: int,
                 before_step: Callable[[int, int], None], parallel: Parallel) -> EpochResult:
    """One epoch (or what is left of the step budget) from `state`, which it advances."""
    device = data.train_x.device
    use_amp = device.type == "cuda"
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, checked_at = 0, state.step
    for global_index in epoch_batches(len(data.train_y), config.batch_size, state.generator, device,
                                      parallel.world_size):
        if state.step >= steps:
            break
        before_step(state.step, steps)
        index = parallel.share(global_index)
        inputs, targets = data.train_x[index], data.train_y[index]
        with torch.autocast(device.type, enabled=use_amp), recomputing():
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.schedule.step()
        state.step += 1
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(dim=1) == targets).sum()
        seen += len(index)
        if state.step % config.check_every == 0:
            _check_finite(parallel.sum(loss_sum), state.epoch, checked_at + 1, state.step)
            checked_at = state.step
    _check_finite(parallel.sum(loss_sum), state.epoch, checked_at + 1, state.step)
    if parallel.world_size == 1:
        return EpochResult(state.epoch, state.step, float(loss_sum) / seen, int(correct) / seen)
    totals = parallel.sum(torch.stack([loss_sum.double(), correct.double(),
                                       torch.tensor(float(seen), dtype=torch.float64, device=device)]))
    loss_total, correct_total, seen_total = totals.tolist()
    return EpochResult(state.epoch, state.step, loss_total / seen_total, correct_total / seen_total)


def _check_finite(loss_sum: torch.Tensor, epoch: int, first_step: int, last_step: int) -> None:
    if not bool(torch.isfinite(loss_sum)):
        raise Diverged(epoch, first_step, last_step)


#: Images per forward pass of an evaluation: the logits do not depend on it (eval mode), the peak memory does.
EVAL_BATCH = 128


def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = EVAL_BATCH,
             parallel: Parallel = SINGLE) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode; with several processes each evaluates its share of the
    images and the sums are added up, so every process returns the same pair.

    The logits do not depend on the batch size (eval mode); a batch of 128 keeps the activations of a
    network at 28x28 a quarter of what 512 needs, which would otherwise set the trial's peak memory.
    """
    model.eval()
    share = parallel.share(torch.arange(len(targets)))
    start, stop = (int(share[0]), int(share[-1]) + 1) if len(share) else (0, 0)
    loss_sum = torch.zeros((), device=inputs.device)
    correct = torch.zeros((), device=inputs.device, dtype=torch.long)
    with torch.inference_mode(), torch.autocast(inputs.device.type, enabled=inputs.device.type == "cuda"):
        for first in range(start, stop, batch_size):
            last = min(first + batch_size, stop)
            logits = model(inputs[first:last]).float()
            batch_targets = targets[first:last]
            loss_sum += F.cross_entropy(logits, batch_targets, reduction="sum")
            correct += (logits.argmax(dim=1) == batch_targets).sum()
    if parallel.world_size > 1:
        totals = parallel.sum(torch.stack([loss_sum.double(), correct.double()]))
        loss_sum, correct = totals[0], totals[1]
    loss = float(loss_sum) / len(targets)
    return (loss if math.isfinite(loss) else math.nan), int(correct) / len(targets)


#: Training images whose BatchNorm statistics replace the running averages before an evaluation.
RECALIBRATION_IMAGES = 2000


def recalibrate_batchnorm(network: nn.Module, images: torch.Tensor, batch_size: int = 256,
                          max_images: int = RECALIBRATION_IMAGES) -> None:
    """Replace every BatchNorm's running statistics by exact averages over the first `max_images` of `images`
    (forward passes in training mode, no gradients, no weight changes).

    After a short run the running averages (momentum 0.1) still mix the statistics of the first steps' very
    different weights; evaluated with them, a network trained for a few dozen steps can score at chance.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    was_training = network.training
    network.train()
    count = min(len(images), max_images)
    with torch.no_grad(), torch.autocast(images.device.type, enabled=images.device.type == "cuda"):
        for start in range(0, count - 1, batch_size):
            network(images[start:min(start + batch_size, count)])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    network.train(was_training)


def evaluate_trained(model: nn.Module, data: Tensors, batch_size: int = EVAL_BATCH, parallel: Parallel = SINGLE
                     ) -> tuple[float, float]:
    """(loss, accuracy) on the validation split after recalibrating BatchNorm on the training images (on
    every process the same images; rank 0's statistics are then copied to all, so all evaluate one network)."""
    recalibrate_batchnorm(model, data.train_x)
    parallel.broadcast_buffers(model)
    return evaluate(model, data.val_x, data.val_y, batch_size, parallel)
