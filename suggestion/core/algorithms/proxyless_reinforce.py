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

Metric values are read defensively, since a trial reports whatever it prints:
a trial whose accuracy lies outside [0, MAX_ACCURACY] (a fraction or a
percentage) or whose latency lies outside [MIN_LATENCY_MS, MAX_LATENCY_MS] is
skipped, and the latency factor (T / L)^w is clipped at MAX_LATENCY_FACTOR, so
every reward is finite and bounded; each call logs one line naming what it
skipped or clipped and why.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from katib_nas.contract.codec import CodecError, decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture
from katib_nas.contract.supernet import choices_of

from ..experiment import TrialRecord
from ..settings import read_int

INDEX_LABEL = "proxylessnas-index"
#: Highest accuracy read: 1 for a fraction, 100 for a percentage.
MAX_ACCURACY = 100.0
#: Latencies read, in ms: below a nanosecond or above hours is no measurement of a forward pass.
MIN_LATENCY_MS = 1e-6
MAX_LATENCY_MS = 1e7
#: Largest factor (T / L)^w a reward may carry; a larger one is clipped to it.
MAX_LATENCY_FACTOR = 1e6
log = logging.getLogger(__name__)


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
    """accuracy * (T / latency)^w, or the accuracy alone when no latency target is set.

    The factor (T / latency)^w is clipped at MAX_LATENCY_FACTOR, so the reward stays finite."""
    if config.latency_target_ms <= 0 or config.latency_exponent == 0:
        return accuracy
    if latency_ms is None or latency_ms <= 0:
        raise ValueError("a positive latency is needed for a latency-aware reward")
    return accuracy * latency_factor(latency_ms, config)


def latency_factor(latency_ms: float, config: ReinforceConfig) -> float:
    """(T / latency)^w, at most MAX_LATENCY_FACTOR."""
    try:
        factor = (config.latency_target_ms / latency_ms) ** config.latency_exponent
    except OverflowError:
        factor = math.inf
    return min(factor, MAX_LATENCY_FACTOR)


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
    """Succeeded trials with the needed metrics and an architecture from this supernet, in replay order.

    Trials with an accuracy or latency no measurement can have are skipped; one log line says how many and
    why, and names the first."""
    usable = []
    unreadable: list[str] = []
    clipped: list[str] = []
    needs_latency = config.latency_target_ms > 0 and config.latency_exponent != 0
    for trial in history:
        if not trial.succeeded:
            continue
        accuracy = trial.numbers.get(config.objective_metric)
        latency = trial.numbers.get(config.latency_metric)
        if accuracy is None or (needs_latency and (latency is None or latency <= 0)):
            continue
        reason = _unreadable_metric(accuracy, latency if needs_latency else None, config)
        if reason:
            unreadable.append(f"trial {trial.name!r} {reason}")
            continue
        try:
            choices = choices_of(supernet, decode(trial.assignments.get("architecture", "")))
        except (CodecError, InvalidInput):
            continue
        if needs_latency and latency_factor(latency, config) >= MAX_LATENCY_FACTOR:
            clipped.append(f"trial {trial.name!r} {config.latency_metric}={latency:g}")
        usable.append((_replay_key(trial), Episode(tuple(choices), reward(accuracy, latency, config))))
    if unreadable:
        log.warning("proxylessnas reinforce skipped %d trial(s) with metric values no measurement can have; "
                    "first: %s", len(unreadable), unreadable[0])
    if clipped:
        log.warning("proxylessnas reinforce clipped the latency factor (T / latency)^w at %g for %d trial(s); "
                    "first: %s", MAX_LATENCY_FACTOR, len(clipped), clipped[0])
    usable.sort(key=lambda pair: pair[0])
    return [episode for _, episode in usable]


def _unreadable_metric(accuracy: float, latency: float | None, config: ReinforceConfig) -> str:
    """Why the trial's accuracy or latency cannot be a measurement, or "" when both can."""
    if not 0.0 <= accuracy <= MAX_ACCURACY:
        return f"{config.objective_metric}={accuracy:g} outside [0, {MAX_ACCURACY:g}]"
    if latency is not None and not MIN_LATENCY_MS <= latency <= MAX_LATENCY_MS:
        return f"{config.latency_metric}={latency:g} outside [{MIN_LATENCY_MS:g}, {MAX_LATENCY_MS:g}] ms"
    return ""


def _replay_key(trial: TrialRecord) -> tuple[float, str]:
    """Suggestion index from the label (ASCII digits only; anything else sorts last), then the name."""
    number = read_int(trial.labels.get(INDEX_LABEL, ""))
    index = float(number) if number is not None and number >= 0 else math.inf
    return index, trial.name
