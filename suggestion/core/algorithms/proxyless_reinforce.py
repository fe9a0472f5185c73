"""ProxylessNAS REINFORCE mode: path probabilities per block, rebuilt by replaying finished trials.

Every searchable block b has logits alpha[b] over its candidate ops; a trial's
architecture takes op a_b ~ softmax(alpha[b]) independently per block. A
finished trial with accuracy A and measured latency L earns the reward
R = A * (T / L)^w (R = A when no target T is set), and every block moves
alpha[b] += lr * (R - baseline) * (onehot(a_b) - softmax(alpha[b])), the
REINFORCE gradient of log p(a). The baseline is a moving average of rewards,
starting at the first reward. Trials are replayed in suggestion order (the
index label written when the trial was proposed; name order breaks ties and
orders trials without the label), so the result does not depend on the order
Katib lists trials and a restarted suggestion service rebuilds the same alpha.
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


def replay(num_blocks: int, num_ops: int, episodes: Sequence[Episode], config: ReinforceConfig) -> np.ndarray:
    """The logits after applying every episode in order, starting from all zeros (uniform paths)."""
    alpha = np.zeros((num_blocks, num_ops))
    baseline: float | None = None
    rows = np.arange(num_blocks)
    for episode in episodes:
        baseline = episode.reward if baseline is None else baseline
        advantage = episode.reward - baseline
        grad = -softmax(alpha)
        grad[rows, list(episode.choices)] += 1.0
        alpha += config.learning_rate * advantage * grad
        baseline = config.baseline_decay * baseline + (1.0 - config.baseline_decay) * episode.reward
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
