"""ProxylessNAS REINFORCE mode: path probabilities per block, rebuilt by replaying finished trials.

Every searchable block b has logits alpha[b] over its candidate ops; a trial's
architecture takes op a_b ~ softmax(alpha[b]) independently per block. A
finished trial with accuracy A and latency L (the table's prediction the
trial reports, by default) earns the reward R = A * (T / L)^w (R = A when no
target T is set).

Every proposal is labelled with the policy version it was drawn from (the
number of updates applied to the logits so far). The batch of version v is
the first `batch_size` usable trials, in suggestion order, among those drawn
from version v and those drawn earlier that no batch has used yet; it updates
the logits (giving version v + 1) once it is complete and no trial that could
still take a place in it (one of version v or earlier, proposed before its
last member) is running. A failed trial leaves a gap that a later trial
fills. With parallel trials, Katib fills a free slot while a batch's last
trial still runs; that proposal, drawn from version u, joins a later batch v
with the truncated importance weight min(1, P_v(path) / P_u(path)), so every
usable trial but those after the last complete batch enters one update, and
trials run one at a time give the plain on-policy rule. Per batch:
the baseline tracks the batch mean (b <- b + (1 - decay) * (mean(R) - b),
starting at the first batch's mean), advantages A_i = (R_i - b) / s are
normalised by the standard deviation s of every reward so far, and Adam
(beta1 = 0) ascends the batch-mean REINFORCE gradient
sum_i w_i * A_i * (onehot(a_i,b) - softmax(alpha[b])) / batch_size.

Each proposal asks Katib to name its trial `<experiment>-<index>v<version>`
(suggestion index, policy version; the service appends a random part, as
Katib's own trial names have, because Katib's metrics database keys metrics
by trial name alone, across namespaces): Katib names the Trial so and sends
the name back with every later request, while the labels it copies onto the
Trial (`proxylessnas-index`, `proxylessnas-policy`, for `kubectl get trials
-l`) never come back in a request. Trials are replayed in suggestion order
(from the labels when a request carries them, else from the name; name order
breaks ties and orders trials with neither), so the result does not depend
on the order Katib lists trials, and a restarted suggestion service rebuilds
the same alpha.

Metric values are read defensively, since a trial reports whatever it prints:
a trial whose accuracy lies outside [0, MAX_ACCURACY] (a fraction or a
percentage) or whose latency lies outside [MIN_LATENCY_MS, MAX_LATENCY_MS] is
skipped, and the latency factor (T / L)^w is clipped at MAX_LATENCY_FACTOR, so
every reward is finite and bounded; each call logs one line naming what it
skipped or clipped and why.
"""

from __future__ import annotations

import functools
import heapq
import logging
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT
from katib_nas.contract.codec import CodecError, decode, encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture
from katib_nas.contract.supernet import choices_of

from ...experiment import TrialRecord
from ...settings import read_int
from ..base import NAME_TOKEN_ALPHABET, NAME_TOKEN_LENGTH

INDEX_LABEL = "proxylessnas-index"
#: Label of a proposal: the policy version (updates applied to the logits) it was drawn from.
POLICY_LABEL = "proxylessnas-policy"
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
    #: The experiment's name, which the trial names this mode asks for begin with.
    experiment_name: str = ""


@dataclass(frozen=True)
class Episode:
    """One finished trial as the update sees it: its op per block, its reward, the policy version it was
    drawn from, its suggestion index and its name."""

    choices: tuple[int, ...]
    reward: float
    policy: int = 0
    index: float = math.inf
    name: str = ""

    @property
    def key(self) -> tuple[float, str]:
        """Replay order: suggestion index, then trial name."""
        return self.index, self.name


@dataclass(frozen=True)
class Policy:
    """The logits after replaying the history, how many updates made them, and the probabilities of every
    version (drawn_from[v]: those the proposals labelled v were drawn from)."""

    alpha: np.ndarray
    version: int
    drawn_from: tuple[np.ndarray, ...] = ()


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


#: Policy version -> replay keys (suggestion index, name) of the trials of that version still running.
Pending = dict[int, list[tuple[float, str]]]
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


def replay(num_blocks: int, num_ops: int, episodes: Sequence[Episode], config: ReinforceConfig,
           pending: Pending | None = None) -> Policy:
    """The logits after every complete batch, version by version, starting from all zeros (uniform paths).

    `pending` holds, per policy version, the replay keys (suggestion index, name) of its trials still
    running."""
    return apply_batches(num_blocks, num_ops, form_batches(episodes, config.batch_size, pending or {}), config)


def apply_batches(num_blocks: int, num_ops: int, batches: Sequence[Sequence[Episode]], config: ReinforceConfig
                  ) -> Policy:
    """The logits after one update per batch, in order, starting from all zeros (uniform paths)."""
    alpha = np.zeros((num_blocks, num_ops))
    drawn_from = [softmax(alpha)]
    second_moment = np.zeros_like(alpha)
    baseline: float | None = None
    rewards_so_far = np.array([episode.reward for batch in batches for episode in batch], dtype=float)
    seen = 0
    for version, batch in enumerate(batches, start=1):
        rewards = rewards_so_far[seen:seen + len(batch)]
        seen += len(batch)
        mean = float(np.mean(rewards))
        baseline = mean if baseline is None else baseline + (1.0 - config.baseline_decay) * (mean - baseline)
        scale = float(np.std(rewards_so_far[:seen])) or 1.0
        grad = batch_gradient(batch, drawn_from, baseline, scale)
        second_moment = ADAM_BETA2 * second_moment + (1.0 - ADAM_BETA2) * grad ** 2
        corrected = second_moment / (1.0 - ADAM_BETA2 ** version)
        alpha += config.learning_rate * grad / (np.sqrt(corrected) + ADAM_EPSILON)
        drawn_from.append(softmax(alpha))
    return Policy(alpha, len(drawn_from) - 1, tuple(drawn_from))


def batch_gradient(batch: Sequence[Episode], drawn_from: Sequence[np.ndarray], baseline: float, scale: float
                   ) -> np.ndarray:
    """mean_i w_i * (R_i - baseline) / scale * (onehot(a_i) - p) at the newest probabilities p =
    drawn_from[-1], each trial weighted against the probabilities drawn_from[its version] it was drawn from."""
    probs = drawn_from[-1]
    rows = np.arange(probs.shape[0])
    grad = np.zeros_like(probs)
    for episode in batch:
        direction = -probs
        direction[rows, list(episode.choices)] += 1.0
        weight = importance_weight(episode, probs, drawn_from[episode.policy])
        grad += weight * (episode.reward - baseline) / scale * direction
    return grad / len(batch)


def importance_weight(episode: Episode, current: np.ndarray, behaviour: np.ndarray) -> float:
    """min(1, P_current(path) / P_behaviour(path)): 1 for a trial drawn from the probabilities being updated,
    and at most 1 for one drawn from an earlier version, so a stale trial never counts more than a fresh one."""
    if behaviour is current:
        return 1.0
    rows = np.arange(current.shape[0])
    picks = list(episode.choices)
    floor = np.finfo(float).tiny
    log_ratio = float(np.sum(np.log(np.maximum(current[rows, picks], floor))
                             - np.log(np.maximum(behaviour[rows, picks], floor))))
    return math.exp(min(log_ratio, 0.0))


def form_batches(episodes: Sequence[Episode], size: int, pending: Pending) -> list[list[Episode]]:
    """The complete batches, version by version (episodes in replay order).

    Version v's batch is the first `size` episodes among those drawn from v or earlier that no earlier batch
    holds, once no trial of version v or earlier that comes before its last member is still running (that
    trial, once finished, would belong in it). Batches stop at the first version whose batch is not complete;
    one log line names the running trial it waits for."""
    by_policy: dict[int, list[int]] = {}
    for position, episode in enumerate(episodes):
        by_policy.setdefault(episode.policy, []).append(position)
    eligible: list[int] = []  # heap of the positions of unused episodes drawn from this version or earlier
    running: list[tuple[float, str]] = []  # keys of running trials drawn from this version or earlier
    batches: list[list[Episode]] = []
    while True:
        version = len(batches)
        for position in by_policy.get(version, ()):
            heapq.heappush(eligible, position)
        running.extend(pending.get(version, ()))
        if len(eligible) < size:
            return batches
        positions = [heapq.heappop(eligible) for _ in range(size)]
        last = episodes[positions[-1]].key
        waiting = min((key for key in running if key < last), default=None)
        if waiting is not None:
            log.info("proxylessnas reinforce: update %d waits for running trial %r (suggestion %g) before it "
                     "uses the trials after it", version + 1, waiting[1], waiting[0])
            return batches
        batches.append([episodes[position] for position in positions])


def sample_choices(alpha: np.ndarray, rng: np.random.Generator) -> list[int]:
    """One op index per block drawn from softmax(alpha)."""
    probs = softmax(alpha)
    return [int(rng.choice(probs.shape[1], p=row)) for row in probs]


def pending_trials(history: Sequence[TrialRecord], batch_size: int, experiment_name: str = "") -> Pending:
    """Policy version -> replay keys (suggestion index, name) of the trials still running."""
    pending: Pending = {}
    for trial in history:
        if not trial.finished:
            key, version = _replay_position(trial, batch_size, experiment_name)
            pending.setdefault(version, []).append(key)
    return pending


def episodes_from_history(history: Sequence[TrialRecord], supernet: Architecture,
                          config: ReinforceConfig) -> list[Episode]:
    """Succeeded trials with the needed metrics and an architecture from this supernet, in replay order.

    Trials with an accuracy or latency no measurement can have are skipped; one log line says how many and
    why, and names the first."""
    usable = []
    unreadable: list[str] = []
    clipped: list[str] = []
    needs_latency = config.latency_target_ms > 0 and config.latency_exponent != 0
    supernet_text = encode(supernet)
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
        choices = path_of(supernet_text, trial.assignments.get(ARCHITECTURE_ASSIGNMENT, ""))
        if choices is None:
            continue
        if needs_latency and latency_factor(latency, config) >= MAX_LATENCY_FACTOR:
            clipped.append(f"trial {trial.name!r} {config.latency_metric}={latency:g}")
        key, version = _replay_position(trial, config.batch_size, config.experiment_name)
        usable.append((key, Episode(choices, reward(accuracy, latency, config), version, key[0], trial.name)))
    if unreadable:
        log.warning("proxylessnas reinforce skipped %d trial(s) with metric values no measurement can have; "
                    "first: %s", len(unreadable), unreadable[0])
    if clipped:
        log.warning("proxylessnas reinforce clipped the latency factor (T / latency)^w at %g for %d trial(s); "
                    "first: %s", MAX_LATENCY_FACTOR, len(clipped), clipped[0])
    usable.sort(key=lambda pair: pair[0])
    return [episode for _, episode in usable]


@functools.lru_cache(maxsize=1 << 14)
def path_of(supernet_text: str, text: str) -> tuple[int, ...] | None:
    """The op index per block of the architecture text, or None when it is no path of the supernet.

    Cached by text: every call replays the whole history, and decoding its architectures again would be most
    of a call's time."""
    try:
        return tuple(choices_of(_decoded(supernet_text), decode(text)))
    except (CodecError, InvalidInput):
        return None


@functools.lru_cache(maxsize=64)
def _decoded(supernet_text: str) -> Architecture:
    return decode(supernet_text)


def _unreadable_metric(accuracy: float, latency: float | None, config: ReinforceConfig) -> str:
    """Why the trial's accuracy or latency cannot be a measurement, or "" when both can."""
    if not 0.0 <= accuracy <= MAX_ACCURACY:
        return f"{config.objective_metric}={accuracy:g} outside [0, {MAX_ACCURACY:g}]"
    if latency is not None and not MIN_LATENCY_MS <= latency <= MAX_LATENCY_MS:
        return f"{config.latency_metric}={latency:g} outside [{MIN_LATENCY_MS:g}, {MAX_LATENCY_MS:g}] ms"
    return ""


def trial_name(experiment_name: str, index: int, version: int) -> str:
    """The name a proposal asks Katib to give its trial, before the service's random part:
    `<experiment>-<index>v<version>`."""
    return f"{experiment_name}-{index}v{version}"


#: What follows `<experiment>-` in a trial_name, with the random part the service adds.
_NAMED = re.compile(rf"([0-9]{{1,18}})v([0-9]{{1,18}})(?:-[{NAME_TOKEN_ALPHABET}]{{{NAME_TOKEN_LENGTH}}})?")


def _named(trial: TrialRecord, experiment_name: str) -> tuple[int, int] | None:
    """(suggestion index, policy version) from a name trial_name gave, or None."""
    prefix = f"{experiment_name}-"
    if not experiment_name or not trial.name.startswith(prefix):
        return None
    match = _NAMED.fullmatch(trial.name[len(prefix):])
    return (int(match.group(1)), int(match.group(2))) if match else None


def _replay_position(trial: TrialRecord, batch_size: int,
                     experiment_name: str = "") -> tuple[tuple[float, str], int]:
    """The trial's replay key (suggestion index, then name; an index that is no ASCII digits sorts last) and the
    policy version it was drawn from, each from its label, else from its name; without either (trials proposed
    before either was written), the version is the batch its suggestion index falls in."""
    named = _named(trial, experiment_name)
    number = _label_number(trial, INDEX_LABEL)
    if number is None and named is not None:
        number = named[0]
    index = float(number) if number is not None else math.inf
    version = _label_number(trial, POLICY_LABEL)
    if version is None:
        version = named[1] if named is not None else int(index // batch_size) if math.isfinite(index) else 0
    return (index, trial.name), version


def _label_number(trial: TrialRecord, label: str) -> int | None:
    number = read_int(trial.labels.get(label, ""))
    return number if number is not None and number >= 0 else None
