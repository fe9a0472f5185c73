"""REINFORCE with parallel trials: policy updates and what they learn, on a synthetic reward.

Katib runs P trials at once and asks for a new proposal whenever one ends, so with P > 1 some proposals are
drawn from a version whose batch is already complete. The shipped replay puts such a trial into the next
batch with a truncated importance weight; the control ("stale dropped") leaves it out of every batch, the
rule a batch of one version's trials alone would give. Both drive the same simulated Katib loop: trials end
in the order they started, the reward of a path is 0.5 + 0.07 x (blocks using op 0) + N(0, 0.05), so op 0 is
best in every block. Reported per setting, as the mean over seeds: policy updates, trials used, and the
final probability of op 0 (uniform: 1/7 = 0.143); one trial at a time is the on-policy reference.

    .venv/bin/python bench/bench_reinforce_parallel.py [--seeds 40]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import (
    Episode,
    Pending,
    Policy,
    ReinforceConfig,
    apply_batches,
    form_batches,
    softmax,
)

BLOCKS, OPS = 6, 7
BatchRule = Callable[[Sequence[Episode], int, Pending], list[list[Episode]]]


@dataclass(frozen=True)
class Setting:
    parallel: int
    trials: int
    batch: int


@dataclass
class Trial:
    choices: tuple[int, ...]
    policy: int
    reward: float | None = None


def stale_dropped(episodes: Sequence[Episode], size: int, pending: Pending) -> list[list[Episode]]:
    """Control: version v's batch is the first `size` trials drawn from v; later ones of v join no batch."""
    batches: list[list[Episode]] = []
    while True:
        version = len(batches)
        members = [episode for episode in episodes if episode.policy == version][:size]
        if len(members) < size or any(key < members[-1].key for key in pending.get(version, [])):
            return batches
        batches.append(members)


def replay_with(rule: BatchRule, trials: dict[int, Trial], config: ReinforceConfig
                ) -> tuple[Policy, list[list[Episode]]]:
    """The policy after the batches `rule` forms from the finished trials, and those batches."""
    episodes = [Episode(t.choices, t.reward, t.policy, float(k)) for k, t in sorted(trials.items())
                if t.reward is not None]
    pending: Pending = {}
    for k, trial in trials.items():
        if trial.reward is None:
            pending.setdefault(trial.policy, []).append((float(k), ""))
    batches = rule(episodes, config.batch_size, pending)
    return apply_batches(BLOCKS, OPS, batches, config), batches


def simulate(setting: Setting, seed: int, rule: BatchRule) -> tuple[int, int, float]:
    """Updates, trials used, final mean probability of op 0 after one simulated experiment."""
    rng = np.random.default_rng(seed)
    config = ReinforceConfig(0.3, setting.batch, 0.9, 0.0, 0.0, "accuracy", "latency")
    trials: dict[int, Trial] = {}

    def propose() -> int:
        policy, _ = replay_with(rule, trials, config)
        probs = softmax(policy.alpha)
        trials[len(trials)] = Trial(tuple(int(rng.choice(OPS, p=row)) for row in probs), policy.version)
        return len(trials) - 1

    running = [propose() for _ in range(min(setting.parallel, setting.trials))]
    while running:
        trial = trials[running.pop(0)]
        trial.reward = 0.5 + 0.07 * trial.choices.count(0) + float(rng.normal(0.0, 0.05))
        if len(trials) < setting.trials:
            running.append(propose())
    policy, batches = replay_with(rule, trials, config)
    return policy.version, sum(len(batch) for batch in batches), float(softmax(policy.alpha)[:, 0].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args()
    settings = [Setting(1, 24, 2), Setting(2, 24, 2), Setting(4, 44, 4), Setting(4, 44, 2)]
    print("| parallel trials | trials | batch | rule | updates | trials used | P(op 0) mean +- s.e. |")
    print("|---|---|---|---|---|---|---|")
    for setting in settings:
        for name, rule in (("shipped (importance-weighted)", form_batches), ("stale dropped", stale_dropped)):
            results = np.array([simulate(setting, seed, rule) for seed in range(args.seeds)])
            best = results[:, 2]
            print(f"| {setting.parallel} | {setting.trials} | {setting.batch} | {name} | {results[:, 0].mean():.1f} "
                  f"| {results[:, 1].mean():.1f} | {best.mean():.3f} +- {best.std(ddof=1) / np.sqrt(len(best)):.3f} |")


if __name__ == "__main__":
    main()
