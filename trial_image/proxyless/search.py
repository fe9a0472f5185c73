"""One-shot ProxylessNAS search: train the supernet with binarized paths, then derive the argmax network.

Weight steps (SGD, cosine schedule) run on the weight split with one sampled
path per block. After the warm-up epochs, every `arch_every` weight steps an
architecture step runs on a held-out split: two sampled paths per block,
binary gates, the hardware-aware loss (its expected latency over each block's
sampled pair, see latency_loss), Adam on the path logits (beta1 = 0,
so paths outside the pair get no update) and the rescale that keeps the
other paths' probabilities. A block whose active path is `zero` gets no
architecture update in that step, as its output carries no signal about
the gate. The derived network keeps the most probable op of every block; with a
latency target, faster ops replace the least certain choices until the table
predicts at most T (see LatencyModel.choices_within).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from katib_nas.contract.oneshot_settings import SearchConfig
from katib_nas.contract.spec import Architecture
from katib_nas.contract.supernet import derive

from ..batchnorm_act import recomputing
from ..distributed import Parallel
from ..inputs import DEFAULTS, SUPERNET_DEFAULTS
from ..model import build_model
from ..optimizers import Adam
from ..trainer import (
    SINGLE,
    Diverged,
    TrainConfig,
    batches_per_epoch,
    epoch_batches,
    evaluate,
    make_optimizer,
    recalibrate_batchnorm,
)
from .gated_cell import gate_choice_bodies
from .gates import PathLogits, PathPair, pair_logit_grad, rescale_pair, sample_pair, sample_path
from .latency_loss import LatencyModel, hardware_loss

LOG = logging.getLogger("katib_nas.trial_image.proxyless")


@dataclass
class SearchData:
    """Tensors on the training device: weight split, architecture split, validation split."""

    weight_x: torch.Tensor
    weight_y: torch.Tensor
    arch_x: torch.Tensor
    arch_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


@dataclass(frozen=True)
class Optimisation:
    """Weight-training settings of the supernet and how often the architecture is updated."""

    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = DEFAULTS.weight_decay
    arch_every: int = SUPERNET_DEFAULTS.arch_every


@dataclass(frozen=True)
class ArchStep:
    """What one architecture step did: its loss, E[lat] (nan without a latency model), pairs per block."""

    loss: float
    expected_ms: float
    pairs: list[PathPair]
    updated: list[bool]


@dataclass(frozen=True)
class SearchResult:
    choices: list[int]
    derived: Architecture
    probabilities: list[list[float]]
    arch_steps: int


class SupernetSearch:
    """The supernet, its path logits and both optimisers."""

    def __init__(self, supernet: Architecture, config: SearchConfig, optimisation: Optimisation,
                 latency: LatencyModel | None, device: torch.device, weight_steps: int,
                 parallel: Parallel = SINGLE):
        self.parallel = parallel
        self.supernet = supernet
        self.config = config
        self.optimisation = optimisation
        self.latency = latency if config.hardware_aware else None
        self.network = build_model(supernet).to(device, memory_format=torch.channels_last)
        self.blocks = gate_choice_bodies(self.network)
        self.logits = PathLogits([len(block.alternatives) for block in self.blocks]).to(device)
        train_config = TrainConfig(lr=optimisation.lr, weight_decay=optimisation.weight_decay)
        self.weight_optimizer, self.schedule = make_optimizer(self.network, train_config, weight_steps)
        self.arch_optimizer = Adam(self.logits.parameters(), lr=config.archlr, betas=(0.0, 0.999), eps=1e-8)
        self.generator = torch.Generator().manual_seed(config.seed)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step of the weights with one sampled path per block; returns the detached loss."""
        for block, probs in zip(self.blocks, self.logits.probs()):
            block.use_single(sample_path(probs, self.generator))
        self.network.train()
        with recomputing():
            loss = F.cross_entropy(self.network(x), y)
        self.weight_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # every process sampled the same paths: the same parameters have gradients on all of them
        self.parallel.average_gradients(list(self.network.parameters()))
        self.weight_optimizer.step()
        self.schedule.step()
        return loss.detach()

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> ArchStep:
        """One update of the path logits from two sampled paths per block, then the rescale."""
        pairs = [sample_pair(probs, self.generator) for probs in self.logits.probs()]
        gates = [block.use_pair(pair) for block, pair in zip(self.blocks, pairs)]
        self.network.train()
        self.network.requires_grad_(False)
        try:
            with recomputing():
                cross_entropy = F.cross_entropy(self.network(x), y)
            expected = self.latency.expected_pair_ms(list(self.logits.alphas), pairs) if self.latency else None
            loss = hardware_loss(cross_entropy, expected, self.config)
            self.arch_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.parallel.average_gradients(gates + list(self.logits.alphas))
        finally:
            self.network.requires_grad_(True)
        updated = self._set_logit_grads(pairs, gates)
        before = [(float(a.detach()[p.active]), float(a.detach()[p.other]))
                  for a, p in zip(self.logits.alphas, pairs)]
        self.arch_optimizer.step()
        for alpha, pair, old, changed in zip(self.logits.alphas, pairs, before, updated):
            if changed:
                rescale_pair(alpha, pair, old)
        for block in self.blocks:
            block.gates = None
        return ArchStep(float(loss.detach()), float(expected.detach()) if expected is not None else float("nan"),
                        pairs, updated)

    def _set_logit_grads(self, pairs: list[PathPair], gates: list[torch.Tensor]) -> list[bool]:
        """Logit gradient per block: pair gradient from the gates plus the latency gradient on the pair."""
        updated = []
        for alpha, cell, pair, gate in zip(self.logits.alphas, self.supernet.cells, pairs, gates):
            if cell.ops[pair.active].kind == "zero" or gate.grad is None:
                alpha.grad = None
                updated.append(False)
                continue
            grad = pair_logit_grad(alpha, pair, (float(gate.grad[pair.active]), float(gate.grad[pair.other])))
            if alpha.grad is not None:
                involved = list(pair.involved)
                grad[involved] += alpha.grad[involved]
            alpha.grad = grad
            updated.append(True)
        return updated

    def derived_choices(self) -> list[int]:
        """The argmax op of every block; within the latency target when the search has one."""
        choices = self.logits.argmax()
        if self.latency is None:
            return choices
        bounded = self.latency.choices_within(self.logits.probabilities(), self.config.target)
        if bounded != choices:
            LOG.info("derived network: %d block(s) switched to faster ops to meet the %.3f ms target "
                     "(predicted %.3f ms -> %.3f ms)", sum(a != b for a, b in zip(choices, bounded)),
                     self.config.target, self.latency.network_ms(choices), self.latency.network_ms(bounded))
        return bounded

    def use_choices(self, choices: list[int]) -> None:
        """Fix one path per block, e.g. the derived network's, for evaluation with the supernet's weights."""
        for block, choice in zip(self.blocks, choices):
            block.use_single(choice)

    def result(self, arch_steps: int) -> SearchResult:
        choices = self.derived_choices()
        return SearchResult(choices, derive(self.supernet, choices), self.logits.probabilities(), arch_steps)


def run_search(supernet: Architecture, config: SearchConfig, optimisation: Optimisation, data: SearchData,
               latency: LatencyModel | None,
               on_epoch: Callable[[int, float, list[list[float]]], None] = lambda e, loss, p: None,
               parallel: Parallel = SINGLE) -> tuple[SupernetSearch, SearchResult]:
    """Warm-up, then alternating weight and architecture steps for config.epochs epochs. With several
    processes each takes its share of every global weight and architecture batch and the gradients are
    averaged, so all of them hold the same weights and path logits."""
    device = data.weight_x.device
    processes = parallel.world_size
    per_epoch = batches_per_epoch(len(data.weight_y), optimisation.batch_size, processes)
    search = SupernetSearch(supernet, config, optimisation, latency, device, per_epoch * config.epochs, parallel)
    order = torch.Generator().manual_seed(config.seed)
    arch_batches = _forever(len(data.arch_y), optimisation.batch_size, order, device, processes)
    step = arch_steps = 0
    for epoch in range(1, config.epochs + 1):
        loss_sum = torch.zeros((), device=device)
        count = 0
        for global_index in epoch_batches(len(data.weight_y), optimisation.batch_size, order, device, processes):
            index = parallel.share(global_index)
            loss_sum += search.weight_step(data.weight_x[index], data.weight_y[index]) * len(index)
            count += len(index)
            step += 1
            if epoch > config.warmup and step % optimisation.arch_every == 0:
                arch_index = parallel.share(next(arch_batches))
                search.arch_step(data.arch_x[arch_index], data.arch_y[arch_index])
                arch_steps += 1
        if processes > 1:
            totals = parallel.sum(torch.stack([loss_sum.double(), torch.tensor(float(count), device=device,
                                                                               dtype=torch.float64)]))
            loss_sum, count = totals[0], int(totals[1])
        mean_loss = float(loss_sum) / max(count, 1)
        if mean_loss != mean_loss or mean_loss == float("inf"):
            raise Diverged(epoch, 1, step)
        LOG.info("epoch %d: supernet train loss %.4f, %d architecture steps so far", epoch, mean_loss, arch_steps)
        on_epoch(epoch, mean_loss, search.logits.probabilities())
    return search, search.result(arch_steps)


def evaluate_derived(search: SupernetSearch, choices: list[int], data: SearchData, batch_size: int = 256
                     ) -> tuple[float, float]:
    """(loss, accuracy) on the validation split of the derived network (`choices`) with the supernet's weights.

    The BatchNorm statistics are first recomputed on the weight split with the derived paths fixed: the
    running averages kept during the search mix the inputs of many different paths.
    """
    search.use_choices(choices)
    recalibrate_batchnorm(search.network, data.weight_x, batch_size)
    search.parallel.broadcast_buffers(search.network)
    return evaluate(search.network, data.val_x, data.val_y, parallel=search.parallel)


@dataclass(frozen=True)
class PathConfidence:
    """How decided the search is, per block: the largest path probability and the entropy (nats)."""

    largest: list[float]
    entropy: list[float]

    @classmethod
    def of(cls, probabilities: list[list[float]]) -> "PathConfidence":
        largest = [max(row) for row in probabilities]
        entropy = [-sum(p * math.log(p) for p in row if p > 0) for row in probabilities]
        return cls(largest, entropy)

    def summary(self) -> str:
        return ", ".join(f"block {b}: p_max {p:.3f} H {h:.3f}" for b, (p, h) in enumerate(zip(self.largest,
                                                                                                  self.entropy)))


@dataclass(frozen=True)
class PathRanking:
    """The derived network against uniformly sampled paths, all on the supernet's weights: rank 1 is best. A path
    that ties the derived network counts as ahead of it (accuracies on a few thousand images tie often), so a
    top rank is never a tie read in the search's favour."""

    derived_accuracy: float
    sampled_accuracies: list[float]

    @property
    def rank(self) -> int:
        return 1 + sum(accuracy >= self.derived_accuracy for accuracy in self.sampled_accuracies)


def rank_against_uniform(search: SupernetSearch, choices: list[int], data: SearchData, count: int, seed: int
                         ) -> PathRanking:
    """Validation accuracy of the derived paths and of `count` uniformly sampled paths, each evaluated with the
    supernet's weights after BatchNorm recalibration: whether the search learned more than a uniform draw."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [len(block.alternatives) for block in search.blocks]
    sampled = [[int(torch.randint(size, (1,), generator=generator)) for size in sizes] for _ in range(count)]
    derived = evaluate_derived(search, choices, data)[1]
    return PathRanking(derived, [evaluate_derived(search, paths, data)[1] for paths in sampled])


def _forever(count: int, batch_size: int, generator: torch.Generator, device: torch.device, processes: int = 1
             ) -> Iterator[torch.Tensor]:
    while True:
        yield from epoch_batches(count, batch_size, generator, device, processes)
