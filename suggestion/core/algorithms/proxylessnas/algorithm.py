"""proxylessnas: ProxylessNAS (Cai, Zhu, Han, ICLR 2019) as a Katib algorithm, in two modes.

oneshot (default): like Katib's DARTS, each suggestion is one trial that
trains the whole supernet with binarized path gates and reports the derived
network as the string metric Best-Architecture. Assignments: `architecture`
(the supernet text) and `search` (the compact search settings, see
contract/oneshot_settings.py). Trial k of an experiment searches with seed `seed + k`.

reinforce: each trial trains one network sampled from per-block path
probabilities; the probabilities are rebuilt from the finished trials on
every call (see reinforce.py). Assignment: `architecture`; each
proposal asks for the trial name `<experiment>-<index>v<version>` (its
suggestion number and the policy version it was drawn from), which Katib sends
back, and carries the same as the labels `proxylessnas-index` and
`proxylessnas-policy`, which Katib puts on the Trial only.
"""

from __future__ import annotations

from dataclasses import dataclass

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT
from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.metric_format import LATENCY_MS, PREDICTED_LATENCY_MS
from katib_nas.contract.oneshot_settings import SearchConfig, to_text
from katib_nas.contract.spec import MAX_WIDTH, Architecture
from katib_nas.contract.supernet import derive

from ...experiment import ExperimentInfo, TrialRecord
from ...settings import parse_settings, setting
from ...space import parse_nas_config
from ..base import MAX_SEED_SETTING, Proposal, seeded_rng
from .reinforce import (
    INDEX_LABEL,
    POLICY_LABEL,
    ReinforceConfig,
    episodes_from_history,
    pending_trials,
    replay,
    sample_choices,
    trial_name,
)
from .space import SupernetLayout, build_supernet, parse_int_list

ASSIGNMENTS = {"oneshot": (ARCHITECTURE_ASSIGNMENT, "search"), "reinforce": (ARCHITECTURE_ASSIGNMENT,)}
LOSS_SETTING = {"mul-log": "mullog", "add-linear": "addlin"}


@dataclass(frozen=True)
class ProxylessSettings:
    mode: str = setting("oneshot", "oneshot: one supernet-training trial; reinforce: sampled trials",
                        choices=("oneshot", "reinforce"))
    seed: int = setting(0, "seed of the search; one-shot trial k uses seed + k", low=0, high=MAX_SEED_SETTING)
    stem_width: int = setting(16, "width of the 3x3 stem convolution", low=1, high=MAX_WIDTH)
    stage_widths: str = setting("16,32,64", "comma-separated width of every stage")
    stage_strides: str = setting("1,2,2", "comma-separated stride (1 or 2) of every stage")
    latency_target_ms: float = setting(0.0, "latency target T in ms; 0 searches without latency", low=0.0,
                                       high=1e6)
    epochs: int = setting(SearchConfig.epochs, "oneshot: supernet training epochs, warm-up included (on 12,000 training images: "
                              "about 375 architecture steps after a 2-epoch warm-up)", low=1, high=10000)
    warmup_epochs: int = setting(SearchConfig.warmup, "oneshot: first epochs that train weights only", low=0, high=10000)
    latency_loss: str = setting("mul-log", "oneshot: CE*(log E[lat]/log T)^beta or CE+lambda*(E[lat]-T)/T",
                                choices=("mul-log", "add-linear"))
    beta: float = setting(SearchConfig.beta, "oneshot: exponent of the mul-log latency loss", low=0.0, high=100.0)
    latency_lambda: float = setting(SearchConfig.lambda_, "oneshot: weight of the add-linear latency loss", low=0.0, high=100.0)
    arch_lr: float = setting(SearchConfig.archlr, "oneshot: Adam learning rate of the path logits", low=1e-6, high=10.0)
    retrain_epochs: int = setting(SearchConfig.retrain, "oneshot: epochs to retrain the derived network from scratch (0: keep "
                                     "the supernet weights)", low=0, high=10000)
    reinforce_lr: float = setting(0.3, "reinforce: Adam step size of the path-logit update", low=0.0, high=100.0)
    reinforce_batch: int = setting(0, "reinforce: successful trials per update (those drawn from earlier "
                                      "probabilities importance-weighted); 0 means max(parallelTrialCount, 2)", low=0, high=1000)
    baseline_decay: float = setting(0.9, "reinforce: decay of the baseline that tracks the batch-mean reward",
                                    low=0.0, high=1.0)
    latency_exponent: float = setting(0.07, "reinforce: w in reward = accuracy * (T / latency)^w", low=0.0,
                                      high=100.0)
    latency_metric: str = setting(PREDICTED_LATENCY_MS, "reinforce: trial metric holding the latency in ms "
                                  f"(the latency table's prediction; {LATENCY_MS} for the measured one)")


class ProxylessNas:
    name = "proxylessnas"
    settings_class = ProxylessSettings

    def assignment_names(self, experiment: ExperimentInfo) -> tuple[str, ...]:
        """The names of the experiment's mode; InvalidInput when its settings do not parse."""
        return ASSIGNMENTS[parse_settings(ProxylessSettings, experiment.settings, self.name).mode]

    def validate(self, experiment: ExperimentInfo) -> tuple[ProxylessSettings, Architecture]:
        settings = parse_settings(ProxylessSettings, experiment.settings, self.name)
        layout = SupernetLayout(settings.stem_width,
                                parse_int_list(settings.stage_widths, "stage_widths", 1, MAX_WIDTH),
                                parse_int_list(settings.stage_strides, "stage_strides", 1, 2))
        supernet = build_supernet(parse_nas_config(experiment.nas_config), layout)
        if settings.mode == "oneshot":
            search_config(settings, 0)
        else:
            _check_reinforce(settings, experiment)
        return settings, supernet

    def suggest(self, experiment: ExperimentInfo, history: list[TrialRecord], count: int,
                first_index: int) -> Proposal:
        settings, supernet = self.validate(experiment)
        indices = range(first_index, first_index + count)
        if settings.mode == "oneshot":
            text = encode(supernet)
            return Proposal([{ARCHITECTURE_ASSIGNMENT: text, "search": to_text(search_config(settings, k))}
                             for k in indices])
        config = reinforce_config(settings, experiment)
        policy = replay(len(supernet.cells), len(supernet.cells[0].ops),
                        episodes_from_history(history, supernet, config), config,
                        pending_trials(history, config.batch_size, experiment.name))
        assignments = []
        for k in indices:
            choices = sample_choices(policy.alpha, seeded_rng(experiment.name, settings.seed, "reinforce", k))
            assignments.append({ARCHITECTURE_ASSIGNMENT: encode(derive(supernet, choices))})
        return Proposal(assignments, labels=[{INDEX_LABEL: str(k), POLICY_LABEL: str(policy.version)}
                                             for k in indices],
                        trial_names=[trial_name(experiment.name, k, policy.version) for k in indices])


def search_config(settings: ProxylessSettings, trial_index: int) -> SearchConfig:
    """The one-shot search settings of trial `trial_index`."""
    if settings.warmup_epochs >= settings.epochs:
        raise InvalidInput(f"setting warmup_epochs={settings.warmup_epochs} must be below epochs={settings.epochs} "
                           f"so that the architecture is trained at all")
    loss = LOSS_SETTING[settings.latency_loss] if settings.latency_target_ms > 0 else "none"
    return SearchConfig(epochs=settings.epochs, warmup=settings.warmup_epochs, loss=loss,
                        target=settings.latency_target_ms, beta=settings.beta, lambda_=settings.latency_lambda,
                        archlr=settings.arch_lr, retrain=settings.retrain_epochs,
                        seed=settings.seed + trial_index).check()


def reinforce_config(settings: ProxylessSettings, experiment: ExperimentInfo) -> ReinforceConfig:
    batch = settings.reinforce_batch or max(experiment.parallel_trial_count, 2)
    return ReinforceConfig(settings.reinforce_lr, batch, settings.baseline_decay, settings.latency_target_ms,
                           settings.latency_exponent, experiment.objective_metric, settings.latency_metric,
                           experiment.name)


def _check_reinforce(settings: ProxylessSettings, experiment: ExperimentInfo) -> None:
    if not experiment.maximize:
        raise InvalidInput(f"proxylessnas reinforce rewards accuracy: the objective {experiment.objective_metric} "
                           f"must be maximized")
    uses_latency = settings.latency_target_ms > 0 and settings.latency_exponent > 0
    if uses_latency and settings.latency_metric not in experiment.additional_metrics:
        raise InvalidInput(f"proxylessnas reinforce with latency_target_ms={settings.latency_target_ms:g} reads the "
                           f"trial metric {settings.latency_metric!r}: add it to additionalMetricNames")
