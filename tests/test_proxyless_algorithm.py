"""proxylessnas on the suggestion side: supernet layout, one-shot proposal, REINFORCE replay (numpy only)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.oneshot_settings import SearchConfig, from_text, to_text
from katib_nas.contract.supernet import choices_of, derive
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.proxylessnas import ProxylessNas
from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import (
    INDEX_LABEL,
    POLICY_LABEL,
    Episode,
    ReinforceConfig,
    episodes_from_history,
    replay,
    reward,
    softmax,
)
from katib_nas.suggestion.core.experiment import TrialRecord, make_trial

from .support.proxylessnas import REINFORCE, experiment, nas_config, reinforce_history

MB_OPS = ["mb3e3", "mb3e6", "mb5e3", "mb5e6", "mb7e3", "mb7e6", "zero"]


def test_assignment_names_follow_each_experiments_own_mode() -> None:
    algorithm = ProxylessNas()
    reinforce, oneshot = experiment(REINFORCE), experiment()
    algorithm.validate(reinforce)
    assert algorithm.assignment_names(oneshot) == ("architecture", "search")
    assert algorithm.assignment_names(reinforce) == ("architecture",)
    assert set(algorithm.suggest(oneshot, [], 1, 0).assignments[0]) == {"architecture", "search"}


def test_oneshot_proposes_the_supernet_and_search_settings() -> None:
    proposal = engine.suggest(experiment({"epochs": "5", "warmup_epochs": "1", "latency_target_ms": "1.5"}), [], 2, 0)
    first, second = proposal.assignments
    supernet = decode(first["architecture"])
    assert [len(s.cells) for s in supernet.stages] == [2, 2, 2]
    assert [(s.width, s.stride) for s in supernet.stages] == [(16, 1), (32, 2), (64, 2)]
    assert all(c.choice and c.residual and [encode_op_text(o) for o in c.ops] == MB_OPS for c in supernet.cells)
    config = from_text(first["search"])
    assert (config.epochs, config.warmup, config.loss, config.target, config.seed) == (5, 1, "mullog", 1.5, 0)
    assert from_text(second["search"]).seed == 1 and second["architecture"] == first["architecture"]


def encode_op_text(op: Any) -> str:
    from katib_nas.contract.codec import encode_op
    return encode_op(op)


def test_blocks_spread_over_stages_with_the_remainder_last() -> None:
    proposal = engine.suggest(experiment({"stage_widths": "8,16", "stage_strides": "1,2"},
                                         nas_config=nas_config(num_layers=5)), [], 1, 0)
    assert [len(s.cells) for s in decode(proposal.assignments[0]["architecture"]).stages] == [2, 3]


@pytest.mark.parametrize("settings, fields, message", [
    ({"stage_widths": "16,x"}, {}, "stage_widths"),
    ({"stage_widths": "0,32,64"}, {}, r"stage_widths='0,32,64': value 0 outside \[1, 4096\]"),
    ({"stage_strides": "0,2,2"}, {}, r"stage_strides='0,2,2': value 0 outside \[1, 2\]"),
    ({"stage_strides": "1,3,2"}, {}, r"stage_strides='1,3,2': value 3 outside \[1, 2\]"),
    ({"stage_strides": "1,2"}, {}, "same number of stages"),
    ({"stage_strides": "2,2,2,2,2,2", "stage_widths": "8,8,8,8,8,8"}, {}, "halved only 4 times"),
    ({"warmup_epochs": "12"}, {}, "warmup_epochs"),
    ({"mode": "sometimes"}, {}, "mode"),
    ({}, {"nas_config": nas_config(num_layers=2)}, "cannot fill 3 stages"),
    ({}, {"nas_config": nas_config(extra=[{"operationType": "convolution", "parameters": [
        {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}},
        {"name": "num_filter", "parameterType": "categorical", "feasibleSpace": {"list": ["32"]}}]}])},
     "num_filter"),
    (dict(REINFORCE), {"additional_metrics": ()}, "additionalMetricNames"),
    ({"mode": "reinforce"}, {"maximize": False}, "maximized"),
])
def test_bad_settings_are_refused_with_the_reason(settings: dict[str, str], fields: dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        engine.suggest(experiment(settings, **fields), [], 1, 0)


def operations_config(operations: list[dict[str, Any]], num_layers: int = 3) -> dict[str, Any]:
    return {"graphConfig": {"numLayers": num_layers, "inputSizes": [28, 28, 1], "outputSizes": [10]},
            "operations": operations}


MB3E3 = {"operationType": "mbconv", "parameters": [
    {"name": "kernel_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}},
    {"name": "expand_ratio", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]}


def test_a_block_needs_two_distinct_candidate_operations() -> None:
    """One distinct operation is refused at validation; two make a searchable block."""
    with pytest.raises(InvalidInput, match=r"nasConfig gives 1 distinct operation\(s\); a searchable block needs"):
        engine.validate(experiment(nas_config=operations_config([MB3E3])))
    two = engine.suggest(experiment(nas_config=operations_config([MB3E3, {"operationType": "zero"}])), [], 1, 0)
    supernet = decode(two.assignments[0]["architecture"])
    assert all([encode_op_text(op) for op in cell.ops] == ["mb3e3", "zero"] for cell in supernet.cells)


def test_as_many_stride_2_stages_as_the_input_can_halve_are_accepted() -> None:
    """28x28 inputs halve 4 times: four stride-2 stages fit (five are refused, see above)."""
    settings = {"stage_widths": "8,8,8,8,8", "stage_strides": "1,2,2,2,2"}
    [proposal] = engine.suggest(experiment(settings), [], 1, 0).assignments
    assert [stage.stride for stage in decode(proposal["architecture"]).stages] == [1, 2, 2, 2, 2]


def test_a_supernet_text_may_take_exactly_katibs_limit() -> None:
    """63 blocks of 13 candidates in seven stages: 4096 bytes with a stem of width 10 are proposed, 4097 with a
    stem of width 100 refused before any trial."""
    def conv(kind: str, kernels: list[str]) -> dict[str, Any]:
        return {"operationType": kind, "parameters": [
            {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": kernels}}]}

    space = nas_config(num_layers=63, extra=[conv("convolution", ["1", "3", "5", "7"]),
                                             conv("separable_convolution", ["3", "5", "7"])])
    settings = {"stage_widths": ",".join(["1600"] * 7), "stage_strides": ",".join(["1"] * 7)}
    [proposal] = engine.suggest(experiment({**settings, "stem_width": "10"}, nas_config=space), [], 1, 0).assignments
    assert len(proposal["architecture"].encode()) == 4096
    with pytest.raises(InvalidInput, match="the supernet text is 4097 bytes, over the 4096-byte limit"):
        engine.validate(experiment({**settings, "stem_width": "100"}, nas_config=space))


#: The range of every numeric setting of proxylessnas, as an Experiment may set it.
def test_a_stage_may_be_one_to_4096_channels_wide() -> None:
    """stage_widths accepts both ends of [1, 4096] (values outside are refused, see above)."""
    [proposal] = engine.suggest(experiment({"stage_widths": "1,4096", "stage_strides": "1,2"}), [], 1, 0).assignments
    assert [stage.width for stage in decode(proposal["architecture"]).stages] == [1, 4096]


@pytest.mark.parametrize("settings, loss", [
    ({}, "none"), ({"latency_target_ms": "0.5"}, "mullog"),
    ({"latency_target_ms": "0.5", "latency_loss": "add-linear"}, "addlin"),
])
def test_the_oneshot_search_uses_a_latency_loss_only_with_a_target(settings: dict[str, str], loss: str) -> None:
    """latency_target_ms=0 searches without latency; any target above 0 uses the chosen latency loss."""
    [proposal] = engine.suggest(experiment(settings), [], 1, 0).assignments
    assert from_text(proposal["search"]).loss == loss


@pytest.mark.parametrize("target, exponent, refused", [
    ("0", "0.07", False), ("0.5", "0.07", True), ("2", "0", False), ("2", "0.5", True),
])
def test_reinforce_needs_the_latency_metric_only_when_the_reward_uses_latency(target: str, exponent: str,
                                                                             refused: bool) -> None:
    """The reward reads the latency when there is a target T > 0 and an exponent w > 0; only then must the
    latency metric be among additionalMetricNames."""
    exp = experiment({"mode": "reinforce", "latency_target_ms": target, "latency_exponent": exponent},
                     additional_metrics=())
    if refused:
        with pytest.raises(InvalidInput, match="reads the trial metric 'predicted-latency-ms'"):
            engine.validate(exp)
    else:
        assert len(engine.suggest(exp, [], 1, 0).assignments) == 1


def test_reinforce_over_a_single_block_proposes_its_candidates() -> None:
    """A supernet of one searchable block: every proposal is a network of one of its candidates."""
    exp = experiment({**REINFORCE, "stage_widths": "16", "stage_strides": "1"}, nas_config=nas_config(num_layers=1))
    proposals = engine.suggest(exp, [], 4, 0).assignments
    for proposal in proposals:
        [block] = decode(proposal["architecture"]).cells
        assert [encode_op_text(op) for op in block.ops] in [[op] for op in MB_OPS]


def test_katib_convolutions_without_width_are_candidates() -> None:
    conv = {"operationType": "convolution", "parameters": [
        {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5"]}}]}
    text = engine.suggest(experiment(nas_config=nas_config(extra=[conv])), [], 1, 0).assignments[0]["architecture"]
    assert text.split(":")[1] == "_".join(MB_OPS + ["c3", "c5"]) + "@r"


def test_search_text_round_trips_and_rejects_garbage() -> None:
    config = SearchConfig(epochs=9, warmup=3, loss="addlin", target=0.25, beta=1.5, lambda_=0.3, archlr=1e-5,
                          retrain=2, seed=7)
    assert from_text(to_text(config)) == config
    for bad in ("epochs-x", "speed-3", "epochs-2_warmup-2", "loss-cubic", "nonsense"):
        with pytest.raises(InvalidInput, match="search settings"):
            from_text(bad)


def test_derive_and_choices_are_inverse() -> None:
    supernet = decode(engine.suggest(experiment(), [], 1, 0).assignments[0]["architecture"])
    choices = [6, 0, 5, 3, 1, 6]
    network = derive(supernet, choices)
    assert encode(network).split("/")[1] == "w16:zero@r:mb3e3@r"
    assert choices_of(supernet, decode(encode(network))) == choices
    with pytest.raises(InvalidInput, match="block 0"):
        choices_of(supernet, decode(encode(network).replace("zero@r", "c3@r", 1)))


def test_reinforce_replay_is_independent_of_trial_order_and_restarts() -> None:
    history = reinforce_history(12)
    running = make_trial("px-running", {"architecture": history[0].assignments["architecture"]}, "RUNNING", [],
                         {INDEX_LABEL: "12"})
    failed = make_trial("px-failed", {"architecture": history[1].assignments["architecture"]}, "FAILED", [],
                        {INDEX_LABEL: "13"})
    full = history + [running, failed]
    expected = engine.suggest(experiment(REINFORCE), full, 3, 14)
    for seed in range(3):
        shuffled = list(full)
        random.Random(seed).shuffle(shuffled)
        again = engine.suggest(experiment(REINFORCE), shuffled, 3, 14)
        assert again.assignments == expected.assignments and again.labels == expected.labels
    assert [label[INDEX_LABEL] for label in expected.labels] == ["14", "15", "16"]
    assert len({a["architecture"] for a in expected.assignments}) > 1


def test_reinforce_learns_from_rewards() -> None:
    history = reinforce_history(60)
    config = ReinforceConfig(0.3, 2, 0.9, 2.0, 0.5, "Validation-Accuracy", "latency-ms")
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import episodes_from_history
    supernet = decode(engine.suggest(experiment(), [], 1, 0).assignments[0]["architecture"])
    episodes = episodes_from_history(history, supernet, config)
    assert len(episodes) == 60
    mean_probs = softmax(replay(6, 7, episodes, config).alpha).mean(axis=0)
    assert mean_probs.argmax() == 0 and mean_probs[0] > 0.25, mean_probs


def test_replay_update_matches_the_batched_reinforce_rule() -> None:
    config = ReinforceConfig(0.5, 2, 0.8, 0.0, 0.0, "acc", "lat")
    episodes = [Episode((0, 1), 0.5), Episode((1, 1), 0.9)]
    # One batch: baseline = its mean 0.7, advantages normalised by the rewards' std 0.2 -> -1 and +1, so the
    # batch-mean gradient is (onehot(second) - onehot(first)) / 2; Adam's first step (beta1 = 0) moves every
    # logit with a non-zero gradient by the learning rate, in the gradient's direction.
    alpha = replay(2, 3, episodes, config).alpha
    np.testing.assert_allclose(alpha, [[-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    # An incomplete batch changes nothing: its trials were drawn from the same probabilities as the next one.
    np.testing.assert_array_equal(replay(2, 3, episodes + [Episode((2, 2), 1.0)], config).alpha, alpha)
    assert not replay(2, 3, episodes[:1], config).alpha.any()
    assert reward(0.8, 4.0, ReinforceConfig(1, 2, 0.9, 2.0, 1.0, "a", "l")) == pytest.approx(0.4)


def test_reinforce_reads_the_predicted_latency_by_default() -> None:
    settings = {key: value for key, value in REINFORCE.items() if key != "latency_metric"}
    with pytest.raises(InvalidInput, match="predicted-latency-ms"):
        engine.validate(experiment(settings))
    engine.validate(experiment(settings, additional_metrics=("predicted-latency-ms",)))


def test_reinforce_batches_follow_parallel_trials() -> None:
    from katib_nas.suggestion.core.algorithms.proxylessnas.algorithm import ProxylessSettings, reinforce_config

    assert reinforce_config(ProxylessSettings(), experiment(parallel_trial_count=1)).batch_size == 2
    assert reinforce_config(ProxylessSettings(), experiment(parallel_trial_count=4)).batch_size == 4
    assert reinforce_config(ProxylessSettings(reinforce_batch=3), experiment(parallel_trial_count=4)).batch_size == 3


def simulate_katib(conditions: dict[int, str], order: list[int], parallel: int, total: int, batch: int = 2
                   ) -> tuple[list[TrialRecord], dict[int, np.ndarray]]:
    """Katib driving a reinforce experiment with `parallel` trials running: suggestion k is proposed when a
    slot is free, trials finish in the order `order` gives (by suggestion index), trial k ends with
    conditions.get(k, SUCCEEDED). Each trial is named as its proposal asks and carries no labels, as Katib
    sends it. Returns the history and, per suggestion, the probabilities it was drawn from (read back from
    the algorithm's own replay of the history at that moment)."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.algorithm import ProxylessNas, reinforce_config
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import pending_trials

    info = experiment({**REINFORCE, "reinforce_batch": str(batch)}, parallel_trial_count=parallel)
    algorithm = ProxylessNas()
    settings, supernet = algorithm.validate(info)
    config = reinforce_config(settings, info)
    trials: dict[int, TrialRecord] = {}
    drawn_from: dict[int, np.ndarray] = {}
    finish = list(order)

    def propose() -> None:
        k = len(trials)
        history = list(trials.values())
        drawn_from[k] = softmax(replay(6, 7, episodes_from_history(history, supernet, config), config,
                                       pending_trials(history, config.batch_size, info.name)).alpha)
        proposal = engine.suggest(info, history, 1, k)
        trials[k] = make_trial(proposal.trial_names[0], proposal.assignments[0], "RUNNING", [])

    while len(trials) < min(parallel, total):
        propose()
    while finish:
        k = finish.pop(0)
        text = trials[k].assignments["architecture"]
        condition = conditions.get(k, "SUCCEEDED")
        metrics = [("Validation-Accuracy", str(0.5 + 0.07 * text.count("mb3e3"))), ("latency-ms", "1.0")]
        trials[k] = make_trial(trials[k].name, trials[k].assignments, condition,
                               metrics if condition == "SUCCEEDED" else [])
        if len(trials) < total:
            propose()
    return list(trials.values()), drawn_from


def batches_of(history: list[TrialRecord], parallel: int, batch: int = 2
               ) -> tuple[list[Episode], list[list[Episode]], ReinforceConfig]:
    """The usable episodes of a simulated history, the complete batches the replay forms from them, and the
    experiment's update rule (as simulate_katib's experiment sets it)."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.algorithm import reinforce_config
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import form_batches

    info = experiment({**REINFORCE, "reinforce_batch": str(batch)}, parallel_trial_count=parallel)
    settings, supernet = ProxylessNas().validate(info)
    config = reinforce_config(settings, info)
    episodes = episodes_from_history(history, supernet, config)
    return episodes, form_batches(episodes, batch, {}), config


@pytest.mark.parametrize(("parallel", "batch", "order"), [
    (2, 2, [0, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]),
    (2, 2, list(range(24))),
    (4, 4, [0, 3, 1, 2, 5, 4, 7, 6, 8, 11, 10, 9] + list(range(12, 44))),
    (4, 2, list(range(44))),
    (4, 2, [2, 0, 3, 5, 1, 4, 8, 6, 9, 7, 12, 10, 11, 15, 13, 14, 17, 16] + list(range(18, 44))),
])
def test_every_usable_reinforce_trial_enters_exactly_one_update(parallel: int, batch: int, order: list[int]
                                                                ) -> None:
    """With parallel trials Katib proposes while a batch's last trial runs; such a trial must still enter an
    update (the next batch), once, and failures and out-of-order ends must not lose or repeat trials."""
    history, drawn_from = simulate_katib({1: "FAILED", 6: "FAILED"}, order, parallel=parallel, total=len(order),
                                         batch=batch)
    episodes, batches, config = batches_of(history, parallel, batch)
    # A batch, once formed, never changes: the finished history rebuilds the probabilities every proposal
    # was drawn from (a trial ending later with a lower index must not join an earlier batch).
    rebuilt = replay(6, 7, episodes, config).drawn_from
    for episode in episodes:
        np.testing.assert_allclose(rebuilt[episode.policy], drawn_from[int(episode.index)], rtol=1e-12)
    members = [int(episode.index) for members in batches for episode in members]
    assert len(members) == len(set(members))
    assert len(episodes) - len(members) < batch, (len(episodes), members)
    assert len(batches) == len(episodes) // batch
    for version, members_of_version in enumerate(batches):
        assert all(episode.policy <= version for episode in members_of_version)
        # Each batch is the earliest-proposed of the trials it may hold: stale trials first, in order.
        assert [e.index for e in members_of_version] == sorted(e.index for e in members_of_version)


@pytest.mark.parametrize(("parallel", "batch"), [(2, 2), (4, 2)])
def test_a_stale_reinforce_trial_is_weighted_against_the_probabilities_it_was_drawn_from(parallel: int, batch: int
                                                                                       ) -> None:
    """The replay rebuilds, per version, the probabilities that version's proposals were drawn from, and a
    trial from an earlier version (two or more back with more parallel trials than a batch holds) carries
    min(1, P_now(path) / P_then(path))."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import importance_weight

    history, drawn_from = simulate_katib({}, list(range(24)), parallel=parallel, total=24, batch=batch)
    episodes, batches, config = batches_of(history, parallel, batch)
    rebuilt = replay(6, 7, episodes, config).drawn_from
    for episode in episodes:
        np.testing.assert_allclose(rebuilt[episode.policy], drawn_from[int(episode.index)], rtol=1e-12)
    stale = [(version, e) for version, members in enumerate(batches) for e in members if e.policy < version]
    assert len(stale) >= 8, "two parallel trials in batches of 2 leave a stale trial in most batches"
    weights = []
    for version, episode in stale:
        now, then = rebuilt[version], rebuilt[episode.policy]
        rows, picks = np.arange(now.shape[0]), list(episode.choices)
        ratio = float(np.prod(now[rows, picks] / then[rows, picks]))
        weights.append(importance_weight(episode, now, then))
        assert weights[-1] == pytest.approx(min(1.0, ratio), rel=1e-9)
    assert min(weights) < 0.99, weights
    if parallel > batch:
        assert any(version - episode.policy >= 2 for version, episode in stale)


def test_trials_run_one_at_a_time_update_on_policy() -> None:
    """One trial at a time: every batch holds only trials drawn from the probabilities it updates (weight 1),
    which is the plain REINFORCE rule, even when trials fail."""
    history, _ = simulate_katib({1: "FAILED", 6: "FAILED", 7: "FAILED"}, list(range(24)), parallel=1, total=24)
    episodes, batches, _ = batches_of(history, parallel=1)
    assert len(batches) == len(episodes) // 2 >= 9
    for version, members in enumerate(batches):
        assert [episode.policy for episode in members] == [version, version]


def test_batch_gradient_weights_each_trial_by_its_importance() -> None:
    """Hand-computed: two blocks of two ops, uniform now; the stale trial was drawn where its path had
    probability 0.8 * 0.5, so its weight is (0.5 * 0.5) / (0.8 * 0.5) = 0.625; the fresh one's weight is 1."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import batch_gradient

    then = np.array([[0.8, 0.2], [0.5, 0.5]])
    now = np.full((2, 2), 0.5)
    batch = [Episode((0, 1), 1.0, policy=0, index=3), Episode((1, 1), 0.0, policy=1, index=4)]
    grad = batch_gradient(batch, [then, now], baseline=0.5, scale=0.5)
    # stale: 0.625 * (+1) * [[+0.5, -0.5], [-0.5, +0.5]]; fresh: 1 * (-1) * [[-0.5, +0.5], [-0.5, +0.5]]; mean.
    expected = (0.625 * np.array([[0.5, -0.5], [-0.5, 0.5]]) - np.array([[-0.5, 0.5], [-0.5, 0.5]])) / 2
    np.testing.assert_allclose(grad, expected)
    # A stale path now 1.6 times as likely as when drawn counts as a fresh one (weight 1, not 1.6): advantage
    # +1 times onehot(0) - 0.8 in block 0.
    assert batch_gradient(batch[:1], [now, then], baseline=0.5, scale=0.5)[0, 0] == pytest.approx(0.2)


@pytest.mark.parametrize("seed", range(12))
def test_a_formed_reinforce_batch_never_changes(seed: int) -> None:
    """Random parallel histories (trials ending in any order, failing, or never ending): the batches formed
    when any proposal was made are a prefix of the batches formed at the end, so every version label keeps
    naming the probabilities its trial was drawn from."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import form_batches

    rng = random.Random(seed)
    for _ in range(40):
        parallel, batch, total = rng.randint(1, 5), rng.randint(1, 4), rng.randint(5, 40)
        policy: dict[int, int] = {}
        state: dict[int, str] = {}

        def batches() -> list[list[float]]:
            episodes = [Episode((0,), 0.0, policy[k], float(k), f"t{k}") for k in sorted(state)
                        if state[k] == "ok"]
            pending: dict[int, list[tuple[float, str]]] = {}
            for k in state:
                if state[k] in ("running", "stuck"):
                    pending.setdefault(policy[k], []).append((float(k), f"t{k}"))
            return [[e.index for e in members] for members in form_batches(episodes, batch, pending)]

        snapshots = []

        def propose() -> None:
            snapshots.append(batches())
            k = len(state)
            policy[k], state[k] = len(snapshots[-1]), "stuck" if rng.random() < 0.05 else "running"

        for _ in range(min(parallel, total)):
            propose()
        while running := [k for k in state if state[k] == "running"]:
            state[rng.choice(running)] = "ok" if rng.random() < 0.8 else "failed"
            if len(state) < total:
                propose()
        final = batches()
        for snapshot in snapshots:
            assert final[:len(snapshot)] == snapshot, (parallel, batch, snapshot, final)


def test_trials_without_an_index_label_keep_their_batches() -> None:
    """Trials that lost their index label replay after the others, by name; a running one that sorts before
    a batch's last member holds the batch, so finishing later cannot take that member's place."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.algorithm import reinforce_config
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import form_batches, pending_trials

    info = experiment({**REINFORCE, "reinforce_batch": "1"}, parallel_trial_count=1)
    settings, supernet = ProxylessNas().validate(info)
    config = reinforce_config(settings, info)
    architecture = engine.suggest(info, [], 1, 0).assignments[0]
    metrics = [("Validation-Accuracy", "0.8"), ("latency-ms", "1.0")]
    history = [make_trial("px-0", architecture, "SUCCEEDED", metrics, {INDEX_LABEL: "0", "proxylessnas-policy": "0"}),
               make_trial("px-z", architecture, "SUCCEEDED", metrics, {"proxylessnas-policy": "1"}),
               make_trial("px-a", architecture, "RUNNING", [], {})]

    def names(trials: list[TrialRecord]) -> list[list[str]]:
        episodes = episodes_from_history(trials, supernet, config)
        return [[e.name for e in members] for members in form_batches(episodes, 1, pending_trials(trials, 1))]

    while_running = names(history)
    history[2] = make_trial("px-a", architecture, "SUCCEEDED", metrics, {})
    assert names(history)[:len(while_running)] == while_running == [["px-0"]]


def test_an_update_waiting_for_a_running_trial_names_it(caplog: pytest.LogCaptureFixture) -> None:
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import form_batches

    # Batch 0 is t0, t1; t2 (drawn from version 0 after it) still runs and comes before t4, batch 1's last.
    episodes = [Episode((0,), 0.5, 0, 0.0, "t0"), Episode((1,), 0.6, 0, 1.0, "t1"),
                Episode((1,), 0.7, 1, 3.0, "t3"), Episode((0,), 0.4, 1, 4.0, "t4")]
    with caplog.at_level("INFO"):
        assert len(form_batches(episodes, 2, {0: [(2.0, "t2")]})) == 1
    assert "update 2 waits for running trial 't2' (suggestion 2)" in caplog.text


def test_reinforce_asks_for_trial_names_that_carry_index_and_policy_back_from_katib() -> None:
    """Katib puts a reply's labels on the Trial's metadata but never sends them back; it names the Trial as the
    reply asks and sends that name with every request. A Katib-shaped history (named, unlabelled) replays as
    a labelled one; a 40-character experiment name (Katib's longest) keeps the names DNS-1123 labels; the
    service's random part keeps the names of equal requests apart (Katib keys metrics by trial name alone,
    across namespaces)."""
    from katib_nas.contract.kubernetes_names import is_dns1123_label
    from katib_nas.suggestion.service.convert import suggestions_reply

    labelled = reinforce_history(12)
    info = experiment(REINFORCE)
    first = engine.suggest(info, [], 12, 0)
    asked = [entry.trial_name for entry in suggestions_reply(first, "proxylessnas").parameter_assignments]
    named = [make_trial(name, trial.assignments, "SUCCEEDED", sorted(trial.numbers.items()))
             for name, trial in zip(asked, labelled)]
    expected = engine.suggest(info, [make_trial(t.name, t.assignments, "SUCCEEDED", sorted(t.numbers.items()),
                                                label) for t, label in zip(named, first.labels)], 2, 12)
    got = engine.suggest(info, named, 2, 12)
    assert got.assignments == expected.assignments and got.trial_names == expected.trial_names
    assert got.trial_names[0].startswith("px-12v") and got.labels[0][POLICY_LABEL] == got.trial_names[0][6:]
    replies = [[e.trial_name for e in suggestions_reply(got, "proxylessnas").parameter_assignments] for _ in "ab"]
    assert [name.rsplit("-", 1)[0] for name in replies[0]] == got.trial_names
    assert not set(replies[0]) & set(replies[1])
    long_name = experiment(REINFORCE, name="e" * 40)
    for name in suggestions_reply(engine.suggest(long_name, [], 3, 10**6), "proxylessnas").parameter_assignments:
        assert is_dns1123_label(name.trial_name), name.trial_name


@pytest.mark.parametrize("name", ["px-a1b2c3d4", "px-12", "px-v3", "px-12v", "px--1v2", "other-3v1", "qx-3v1",
                                  "px-3v1x", "px-3v1-abcd", "px-3v1-ABCDE", "px-3v1-abcde-f"])
def test_names_katib_gave_at_random_replay_in_name_order(name: str) -> None:
    """Only names of the form the mode asks for are read; others sort after them, by name."""
    from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import _replay_position

    assert _replay_position(make_trial(name, {}, "RUNNING", []), 2, "px") == ((float("inf"), name), 0)
    assert _replay_position(make_trial("px-3v1", {}, "RUNNING", []), 2, "px") == ((3.0, "px-3v1"), 1)
    assert _replay_position(make_trial("px-3v1-k9x0a", {}, "RUNNING", []), 2, "px") == ((3.0, "px-3v1-k9x0a"), 1)
