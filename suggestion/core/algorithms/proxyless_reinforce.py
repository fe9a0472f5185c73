"""ProxylessNAS REINFORCE mode: path probabilities per block, rebuilt by replaying finished trials.

Every searchable block b has logits alpha[b] over its candidate ops; a trial's
architecture takes op a_b ~ softmax(alpha[b]) independently per block. A
finished trial with accuracy A and latency L (the table's prediction the
trial reports, by default) earns the reward R = A * (T / L)^w (R = A when no
target T is set).

Episodes are grouped in batches of `batch_size` consecutive trials (in
suggestion order); a batch updates the logits once it is complete, so the
trials of a batch are drawn from the same probabilities. Per batch: the
baseline tracks the batch mean (b <- b + (1 - decay) * (mean(R) - b),
starting at the first batch's mean), advantages A_i = (R_i - b) / s are
normalised by the standard deviation s of every reward so far, and Adam
(beta1 = 0) ascends the batch-mean REINFORCE gradient
sum_i A_i * (onehot(a_i,b) - softmax(alpha[b])) / batch_size.

Trials are replayed in suggestion order (the index label written when the
trial was proposed; name order breaks ties and orders trials without the
label), so the result does not depend on the order Katib lists trials, and a
restarted suggestion service rebuilds the same alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from katib_nas.contract.codec import CodecError, decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture
from katib_nas.contract.supernet import choices_of

from ..experiment import TrialRecord

INDEX_LABEL = "proxylessnas-index"


@dataclass(frozen=True)
class ReinforceConfig:
    """Update rule and reward of the REINFORCE mode."""

    learning_rate: float
    batch_size: int
    baseline_decay: float
    latency_target_ms: float
    latency_exponent: float
    objective_metric: str
    latency_metric: str


@dataclass(frozen=True)
class Episode:
    """One finished trial as the update sees it: its op per block and its reward."""

    choices: tuple[int, ...]
    reward: float


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def reward(accuracy: float, latency_ms: float | None, config: ReinforceConfig) -> float:
    """accuracy * (T / latency)^w, or the accuracy alone when no latency target is set."""
    if config.latency_target_ms <= 0 or config.latency_exponent == 0:
        return accuracy
    if latency_ms is None or latency_ms <= 0:
        raise ValueError("a positive latency is needed for a latency-aware reward")
    return accuracy * (config.latency_target_ms / latency_ms) ** config.latency_exponent


ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


def replay(num_blocks: int, num_ops: int, episodes: Sequence[Episode], config: ReinforceConfig) -> np.ndarray:
    """The logits after every complete batch of episodes, in order, starting from all zeros (uniform paths)."""
    alpha = np.zeros((num_blocks, num_ops))
    second_moment = np.zeros_like(alpha)
    baseline: float | None = None
    rewards_so_far: list[float] = []
    rows = np.arange(num_blocks)
    complete = len(episodes) - len(episodes) % config.batch_size
    for update, start in enumerate(range(0, complete, config.batch_size), start=1):
        batch = episodes[start:start + config.batch_size]
        rewards = [episode.reward for episode in batch]
        rewards_so_far.extend(rewards)
        mean = float(np.mean(rewards))
        baseline = mean if baseline is None else baseline + (1.0 - config.baseline_decay) * (mean - baseline)
        scale = float(np.std(rewards_so_far)) or 1.0
        probs = softmax(alpha)
        grad = np.zeros_like(alpha)
        for episode in batch:
            direction = -probs
            direction[rows, list(episode.choices)] += 1.0
            grad += (episode.reward - baseline) / scale * direction
        grad /= len(batch)
        second_moment = ADAM_BETA2 * second_moment + (1.0 - ADAM_BETA2) * grad ** 2
        corrected = second_moment / (1.0 - ADAM_BETA2 ** update)
        alpha += config.learning_rate * grad / (np.sqrt(corrected) + ADAM_EPSILON)
    return alpha


def sample_choices(alpha: np.ndarray, rng: np.random.Generator) -> list[int]:
    """One op index per block drawn from softmax(alpha)."""
    probs = softmax(alpha)
    return [int(rng.choice(probs.shape[1], p=row)) for row in probs]


def episodes_from_history(history: Sequence[TrialRecord], supernet: Architecture,
                          config: ReinforceConfig) -> list[Episode]:
    """Succeeded trials with the needed metrics and an architecture from this supernet, in replay order."""
    usable = []
    for trial in history:
        if not trial.succeeded:
            continue
        accuracy = trial.numbers.get(config.objective_metric)
        latency = trial.numbers.get(config.latency_metric)
        needs_latency = config.latency_target_ms > 0 and config.latency_exponent != 0
        if accuracy is None or (needs_latency and (latency is None or latency <= 0)):
            continue
        try:
            choices = choices_of(supernet, decode(trial.assignments.get("architecture", "")))
        except (CodecError, InvalidInput):
            continue
        usable.append((_replay_key(trial), Episode(tuple(choices), reward(accuracy, latency, config))))
    usable.sort(key=lambda pair: pair[0])
    return [episode for _, episode in usable]


def _replay_key(trial: TrialRecord) -> tuple[float, str]:
    raw = trial.labels.get(INDEX_LABEL, "")
    index = float(raw) if raw.isdigit() else math.inf
    return index, trial.name
