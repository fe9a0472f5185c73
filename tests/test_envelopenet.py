"""envelopenet as Katib drives it: phases rebuilt from the history, replicas, retries, exact counts, restarts."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys

import pytest

from katib_nas.contract.branch_stats import format_branch_stats
from katib_nas.contract.codec import decode, encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms import get_algorithm
from katib_nas.suggestion.core.algorithms.envelopenet import PHASE_LABEL, EnvelopeNet
from katib_nas.suggestion.core.algorithms.envelopenet.config import resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import initial_network, next_network
from katib_nas.suggestion.core.algorithms.envelopenet.schedule import ConstructionError, decode_seed
from katib_nas.suggestion.core.algorithms.envelopenet.stats import (
    average,
    read_statistics,
)
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial

from .support.envelopenet import branch_values, experiment, finished


def running(assignment: dict[str, str], name: str) -> TrialRecord:
    return make_trial(name, assignment, "RUNNING", [])


def ask(exp: ExperimentInfo, history: list[TrialRecord], count: int, first_index: int) -> list[dict[str, str]]:
    return engine.suggest(exp, history, count, first_index).assignments


def expected_next(exp: ExperimentInfo, trials: list[TrialRecord]) -> str:
    config = resolve(exp)
    arch = decode(trials[0].assignments["architecture"])
    return encode(next_network(arch, average([read_statistics(t, arch) for t in trials]), config))


def test_is_registered_under_its_katib_name() -> None:
    assert isinstance(get_algorithm("envelopenet"), EnvelopeNet)


def test_one_trial_at_a_time_builds_each_network_from_the_last_statistics() -> None:
    exp = experiment({"final_network": "last"})
    config = resolve(exp)
    history: list[TrialRecord] = []
    network = initial_network(config)
    for iteration in range(3):
        [proposal] = ask(exp, history, 1, len(history))
        assert proposal["architecture"] == encode(network)
        assert proposal["epochs"] == "1"
        assert decode_seed(proposal["seed"]) == (0, iteration, len(history))
        history.append(finished(proposal, f"t{iteration}"))
        network = next_network(network, read_statistics(history[-1], network), config)
    final = ask(exp, history, 1, 3)
    assert final[0]["architecture"] == encode(network) and final[0]["epochs"] == "10"
    history.append(finished(final[0], "t3"))
    more = ask(exp, history, 2, 4)
    assert [p["architecture"] for p in more] == [encode(network)] * 2
    assert [p["epochs"] for p in more] == ["10", "10"]
    assert len({p["seed"] for p in final + more}) == 3
    assert len(network.stages[0].cells) == 5 and len(network.stages[1].cells) == 5


def test_proposals_carry_a_phase_label() -> None:
    exp = experiment({"iterations": "1"})
    proposal = engine.suggest(exp, [], 2, 0)
    assert proposal.labels == [{PHASE_LABEL: "0"}, {PHASE_LABEL: "0"}]
    history = [finished(proposal.assignments[0], "a"), finished(proposal.assignments[1], "b")]
    assert engine.suggest(exp, history, 1, 2).labels == [{PHASE_LABEL: "final"}]


@pytest.mark.parametrize("count", [0, 1, 2, 5])
@pytest.mark.parametrize("phase", ["start", "waiting", "final"])
def test_exactly_the_requested_number(count: int, phase: str) -> None:
    exp = experiment({"iterations": "1"})
    first = ask(exp, [], 1, 0)[0]
    history = {"start": [], "waiting": [running(first, "a")], "final": [finished(first, "a")]}[phase]
    proposals = ask(exp, history, count, len(history))
    assert len(proposals) == count
    assert len({p["seed"] for p in proposals} | {t.assignments["seed"] for t in history}) == count + len(history)


def test_waiting_iteration_fills_free_slots_with_replicas_not_the_next_network() -> None:
    exp = experiment()
    first = ask(exp, [], 1, 0)[0]
    extra = ask(exp, [running(first, "a")], 2, 1)
    assert [p["architecture"] for p in extra] == [first["architecture"]] * 2
    assert [decode_seed(p["seed"]) for p in extra] == [(0, 0, 1), (0, 0, 2)]


def test_replicas_default_to_parallel_trial_count_and_are_averaged() -> None:
    exp = experiment(parallel=2)
    pair = ask(exp, [], 2, 0)
    assert pair[0]["architecture"] == pair[1]["architecture"] and pair[0]["seed"] != pair[1]["seed"]
    one_done = [finished(pair[0], "a"), running(pair[1], "b")]
    assert ask(exp, one_done, 1, 2)[0]["architecture"] == pair[0]["architecture"]
    both = [finished(pair[0], "a"), finished(pair[1], "b")]
    [proposal] = ask(exp, both, 1, 3)
    assert proposal["architecture"] == expected_next(exp, both)
    assert proposal["architecture"] != expected_next(exp, both[:1])  # the average differs from one replica


def test_the_averaged_set_is_the_lowest_indexed_replicas_once_none_before_them_runs() -> None:
    exp = experiment({"replicas": "2"})
    trio = ask(exp, [], 3, 0)
    waiting = [running(trio[0], "a"), finished(trio[1], "b"), finished(trio[2], "c")]
    assert ask(exp, waiting, 1, 3)[0]["architecture"] == trio[0]["architecture"]
    done = [finished(trio[0], "a"), finished(trio[1], "b"), finished(trio[2], "c")]
    [proposal] = ask(exp, done, 1, 3)
    assert proposal["architecture"] == expected_next(exp, done[:2])
    assert proposal["architecture"] != expected_next(exp, done)


def test_failed_trials_are_retried_up_to_max_retries_then_the_error_says_why() -> None:
    exp = experiment({"max_retries": "2"})
    history: list[TrialRecord] = []
    for attempt in range(3):
        [proposal] = ask(exp, history, 1, attempt)
        assert decode_seed(proposal["seed"]) == (0, 0, attempt)
        history.append(finished(proposal, f"trial-{attempt}", condition="FAILED"))
    with pytest.raises(ConstructionError) as info:
        ask(exp, history, 1, 3)
    message = str(info.value)
    assert "iteration 0 failed 3 times, more than max_retries=2" in message
    assert "trial trial-2: trial ended FAILED" in message
    assert isinstance(info.value, InvalidInput) and "\n" not in message


def test_a_successful_retry_continues_the_construction() -> None:
    exp = experiment({"max_retries": "1"})
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "a", condition="KILLED")]
    [retry] = ask(exp, history, 1, 1)
    history.append(finished(retry, "b"))
    [proposal] = ask(exp, history, 1, 2)
    assert decode_seed(proposal["seed"]) == (0, 1, 2)
    assert proposal["architecture"] == expected_next(exp, history[1:])


@pytest.mark.parametrize(
    "branch_stats, skip_gates, reason",
    [
        ("", None, "reported no Branch-Stats metric (run the trial with --branch-stats"),
        ("0.5", None, "Branch-Stats is the number 0.5, expected text like ta/0.4_1.2"),
        (None, "0.5", "Skip-Gates is the number 0.5, expected text like g/-/0.9"),
        ("g/0.1_0.2_0.3", None, "must start with ta/"),
        ("ms/0.1_0.2_0.3/0.1_0.2_0.3/0.1_0.2_0.3/0.1_0.2_0.3", None,
         "holds the mean-square statistic, the experiment prunes by taylor"),
        ("ta/0.1_0.2_0.3", None, "Branch-Stats lists 1 cells, the architecture has 4"),
        ("ta/0.1_0.2_0.3/0.1_0.2/0.1_0.2_0.3/0.1_0.2_0.3", None, "cell 1 has 2 values, the cell has 3 branches"),
        ("ta/0.1_0.2_0.3/0.1_x_0.3/0.1_0.2_0.3/0.1_0.2_0.3", None, "Branch-Stats cell 1: 'x' is not a number"),
        (None, "", "reported no Skip-Gates metric"),
        (None, "g/-/-/-/-", "Skip-Gates cell 2 has 0 gates, the cell has 1 skip inputs"),
    ],
)
def test_unusable_statistics_count_as_a_failure_with_the_reason(branch_stats: str | None, skip_gates: str | None,
                                                                  reason: str) -> None:
    exp = experiment({"max_retries": "0"})
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "bad", branch_stats=branch_stats, skip_gates=skip_gates)]
    with pytest.raises(ConstructionError, match="succeeded but its statistics are unusable") as info:
        ask(exp, history, 1, 1)
    assert reason in str(info.value)


def test_metrics_unavailable_trials_count_as_failures_whether_katib_sends_them_or_not() -> None:
    exp = experiment({"max_retries": "1"})
    [first] = ask(exp, [], 1, 0)
    sent = [make_trial("a", first, "METRICSUNAVAILABLE", [("Validation-Accuracy", "unavailable")])]
    [retry_sent] = ask(exp, sent, 1, 1)
    [retry_omitted] = ask(exp, [], 1, 1)  # Katib leaves metrics-unavailable trials out of the request
    assert retry_sent == retry_omitted and decode_seed(retry_sent["seed"]) == (0, 0, 1)
    with pytest.raises(ConstructionError, match=r"failed 2 times.*missing from Katib's request"):
        ask(exp, [], 1, 2)
    with pytest.raises(ConstructionError, match="trial ended METRICSUNAVAILABLE"):
        ask(exp, sent + [make_trial("b", retry_sent, "METRICSUNAVAILABLE", [])], 1, 2)


def test_the_final_training_is_retried_and_then_reported() -> None:
    exp = experiment({"iterations": "1", "max_retries": "1"})
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "a")]
    [final] = ask(exp, history, 1, 1)
    history.append(finished(final, "b", condition="FAILED"))
    [again] = ask(exp, history, 1, 2)
    assert again["architecture"] == final["architecture"] and again["epochs"] == "10"
    history.append(finished(again, "c", condition="FAILED"))
    with pytest.raises(ConstructionError, match="the final training failed 2 times"):
        ask(exp, history, 1, 3)


def test_trials_of_other_runs_and_stale_indices_do_not_disturb_the_construction() -> None:
    exp = experiment()
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "a")]
    clean = ask(exp, history, 1, 1)
    foreign = [
        make_trial("x1", {"architecture": "in8x8x1-cls10-stem4/w4:c3", "epochs": "1", "seed": "7"}, "SUCCEEDED", []),
        make_trial("x2", {**first, "seed": str(5 * 1_000_000)}, "FAILED", []),  # another base seed
        make_trial("x3", {"architecture": "garbage", "seed": "not-a-number"}, "FAILED", []),
        make_trial("x5", {**first, "seed": "\u00b2"}, "FAILED", []),  # a digit to str.isdigit, not to int()
        make_trial("x4", {**first, "epochs": "2", "seed": "3"}, "FAILED", []),  # another budget
    ]
    assert ask(exp, history + foreign, 1, 1)[0]["architecture"] == clean[0]["architecture"]
    # a first_index lower than what the history shows never reuses a seed
    assert decode_seed(ask(exp, history, 1, 0)[0]["seed"]) == (0, 1, 1)


def test_settings_seed_and_skip_off() -> None:
    exp = experiment({"seed": "7", "skip": "false"}, metrics=("Branch-Stats",))
    [first] = ask(exp, [], 1, 0)
    assert decode_seed(first["seed"]) == (7, 0, 0)
    assert all(cell.skips == () for cell in decode(first["architecture"]).cells)
    branches, _ = branch_values(first)
    history = [make_trial("a", first, "SUCCEEDED", [("Branch-Stats", format_branch_stats(branches))])]
    [second] = ask(exp, history, 1, 1)
    assert decode_seed(second["seed"]) == (7, 1, 1)
    assert all(cell.skips == () for cell in decode(second["architecture"]).cells)


def test_fresh_instances_and_a_fresh_process_give_identical_proposals() -> None:
    exp = experiment(parallel=2)
    history: list[TrialRecord] = []
    pair = ask(exp, history, 2, 0)
    history = [finished(pair[0], "a"), running(pair[1], "b")]
    here = [EnvelopeNet().suggest(exp, history, 3, 2).assignments for _ in range(2)]
    script = (
        "import json, sys\n"
        "from katib_nas.suggestion.core.algorithms.envelopenet import EnvelopeNet\n"
        "from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord\n"
        "data = json.load(sys.stdin)\n"
        "exp = ExperimentInfo(**{**data['exp'], 'additional_metrics': tuple(data['exp']['additional_metrics'])})\n"
        "history = [TrialRecord(**t) for t in data['history']]\n"
        "print(json.dumps(EnvelopeNet().suggest(exp, history, 3, 2).assignments))\n"
    )
    payload = json.dumps({"exp": dataclasses.asdict(exp), "history": [dataclasses.asdict(t) for t in history]})
    done = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, text=True, check=True)
    assert here[0] == here[1] == json.loads(done.stdout)


def test_construction_view_reports_networks_and_completion() -> None:
    exp = experiment({"iterations": "1", "final_network": "last"})
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "a")]
    state = EnvelopeNet().construction(exp, history, 1)
    assert len(state.networks) == 2 and state.final and not state.finished
    [final] = ask(exp, history, 1, 1)
    state = EnvelopeNet().construction(exp, history + [finished(final, "b")], 2)
    assert state.finished and encode(state.networks[-1]) == final["architecture"]


@pytest.mark.parametrize("parallel, seed", [(1, 0), (2, 1), (2, 2), (3, 3)])
def test_a_simulated_katib_loop_completes_with_consistent_phases(parallel: int, seed: int) -> None:
    """Katib's loop: fill free slots, trials finish in random order, some fail or lose their metrics."""
    exp = experiment({"iterations": "3", "max_retries": "3", "final_network": "last"}, parallel=parallel)
    rng = random.Random(seed)
    trials: dict[str, TrialRecord] = {}
    running_names: list[str] = []
    suggested = 0
    final_done = False
    for _ in range(200):
        free = parallel - len(running_names)
        if free and not final_done:
            visible = [t for t in trials.values() if t.condition != "METRICSUNAVAILABLE"]  # Katib omits these
            proposals = ask(exp, visible, free, suggested)
            assert len(proposals) == free
            for proposal in proposals:
                name = f"trial-{suggested}"
                trials[name] = running(proposal, name)
                running_names.append(name)
                suggested += 1
        name = running_names.pop(rng.randrange(len(running_names)))
        outcome = rng.choices(["SUCCEEDED", "FAILED", "METRICSUNAVAILABLE"], [0.85, 0.1, 0.05])[0]
        trials[name] = finished(trials[name].assignments, name, condition=outcome)
        final_done = any(t.assignments["epochs"] == "10" and t.succeeded for t in trials.values())
        if final_done and not running_names:
            break
    assert final_done
    by_phase: dict[int, set[str]] = {}
    for trial in trials.values():
        by_phase.setdefault(decode_seed(trial.assignments["seed"])[1], set()).add(trial.assignments["architecture"])
    assert sorted(by_phase) == [0, 1, 2, 3] and all(len(texts) == 1 for texts in by_phase.values())
    seeds = [t.assignments["seed"] for t in trials.values()]
    assert len(set(seeds)) == len(seeds) == suggested
    visible = [t for t in trials.values() if t.condition != "METRICSUNAVAILABLE"]
    state = EnvelopeNet().construction(exp, visible, suggested)
    assert state.finished and [encode(n) for n in state.networks] == [by_phase[p].pop() for p in range(4)]


def ask_with_state(exp: ExperimentInfo, history: list[TrialRecord], count: int, first_index: int
                   ) -> tuple[list[dict[str, str]], ExperimentInfo]:
    """One GetSuggestions as Katib makes it: the reply's algorithm settings are merged into later requests."""
    proposal = engine.suggest(exp, history, count, first_index)
    merged = dataclasses.replace(exp, settings={**exp.settings, **proposal.state})
    return proposal.assignments, merged


def test_a_vanished_spare_replica_is_charged_to_its_own_iteration_not_the_next() -> None:
    exp = experiment({"replicas": "1", "max_retries": "0"}, parallel=2)
    (first, spare), exp = ask_with_state(exp, [], 2, 0)
    assert decode_seed(first["seed"])[1] == decode_seed(spare["seed"])[1] == 0
    # Trial 0 succeeds; the spare replica ends metrics-unavailable, and Katib leaves it out of every request.
    history = [finished(first, "t0")]
    [next_iteration], exp = ask_with_state(exp, history, 1, 2)
    assert decode_seed(next_iteration["seed"])[1] == 1
    history.append(finished(next_iteration, "t2"))
    [third], exp = ask_with_state(exp, history, 1, 3)
    assert decode_seed(third["seed"])[1] == 2


def test_a_vanished_trial_of_the_current_iteration_is_still_its_failure() -> None:
    exp = experiment({"replicas": "1", "max_retries": "0"}, parallel=1)
    [first], exp = ask_with_state(exp, [], 1, 0)
    with pytest.raises(ConstructionError, match=r"iteration 0 failed 1 times.*missing from Katib's request"):
        ask_with_state(exp, [], 1, 1)


def scored(assignment: dict[str, str], name: str, accuracy: float | None) -> TrialRecord:
    """A finished construction trial with the given objective, or none reported (statistics as `finished`
    makes them)."""
    trial = finished(assignment, name)
    objective = [] if accuracy is None else [("Validation-Accuracy", str(accuracy))]
    return make_trial(name, assignment, "SUCCEEDED", objective + [(k, v) for k, v in trial.texts.items()])


def construction_history(exp: ExperimentInfo, accuracies: list[float | None]) -> list[TrialRecord]:
    """One trial per iteration, scored with `accuracies` in turn, until the final phase."""
    history: list[TrialRecord] = []
    for accuracy in accuracies:
        proposal = engine.suggest(exp, history, 1, len(history))
        if proposal.labels[0][PHASE_LABEL] == "final":
            break
        history.append(scored(proposal.assignments[0], f"t{len(history)}", accuracy))
    return history


def run_construction(exp: ExperimentInfo, accuracies: list[float | None]) -> tuple[list[str], dict[str, str]]:
    """Iterations scored with `accuracies` in turn, until the final phase; the architectures trained and the
    first final-phase proposal."""
    history = construction_history(exp, accuracies)
    trained = [trial.assignments["architecture"] for trial in history]
    return trained, engine.suggest(exp, history, 1, len(history)).assignments[0]


def test_the_final_training_takes_the_iteration_with_the_best_objective() -> None:
    """Deeper is not always better at a short budget: by default the final network is the evaluated one that
    scored best (the earliest on ties), not the last one constructed."""
    trained, final = run_construction(experiment({"iterations": "4"}), [0.70, 0.80, 0.75, 0.78])
    assert len(trained) == 4 and final["epochs"] == "10"
    assert final["architecture"] == trained[1]
    trained, final = run_construction(experiment({"iterations": "3"}), [0.70, 0.70, 0.70])
    assert final["architecture"] == trained[0]
    trained, last = run_construction(experiment({"iterations": "3", "final_network": "last"}), [0.9, 0.5, 0.5])
    assert last["architecture"] not in trained  # the network built from the last iteration's statistics


def test_a_minimized_objective_picks_the_lowest() -> None:
    exp = dataclasses.replace(experiment({"iterations": "3"}), maximize=False)
    trained, final = run_construction(exp, [0.5, 0.3, 0.4])
    assert final["architecture"] == trained[1]


def test_patience_stops_the_construction_once_iterations_stop_improving() -> None:
    trained, final = run_construction(experiment({"iterations": "6", "patience": "2"}),
                                      [0.70, 0.80, 0.79, 0.78, 0.95, 0.96])
    assert len(trained) == 4  # iterations 2 and 3 did not beat 0.80: stop
    assert final["architecture"] == trained[1] and final["epochs"] == "10"
    trained, _ = run_construction(experiment({"iterations": "4", "patience": "2"}), [0.70, 0.80, 0.79, 0.81])
    assert len(trained) == 4


@pytest.mark.parametrize("maximize, objectives, iterations_run, best", [
    (True, [0.80, 0.90, 0.70, 0.75, 0.95, 0.96], 4, 1),  # 0.90 improves on 0.80 inside the first window
    (False, [0.50, 0.60, 0.70, 0.40, 0.30, 0.20], 3, 0),  # a minimized objective that only rises
])
def test_patience_counts_the_iterations_since_the_last_improvement(maximize: bool, objectives: list[float],
                                                                    iterations_run: int, best: int) -> None:
    """patience=2 stops once the last two iterations both fail to beat every iteration before them (lower is
    better for a minimized objective); an improvement among those two keeps the construction going."""
    exp = dataclasses.replace(experiment({"iterations": "6", "patience": "2"}), maximize=maximize)
    trained, final = run_construction(exp, objectives)
    assert len(trained) == iterations_run
    assert final["architecture"] == trained[best] and final["epochs"] == "10"


@pytest.mark.parametrize("accuracies, score", [((0.5, 0.75), 0.625), ((0.5, None), 0.5), ((None, None), None)])
def test_an_iterations_score_is_the_mean_objective_of_its_replicas_that_report_one(
        accuracies: tuple[float | None, float | None], score: float | None) -> None:
    """The score compared across iterations is the mean over the replicas that reported the objective; an
    iteration where none did has no score."""
    exp = experiment({"iterations": "1", "replicas": "2"})
    pair = ask(exp, [], 2, 0)
    history = [scored(pair[0], "a", accuracies[0]), scored(pair[1], "b", accuracies[1])]
    assert EnvelopeNet().construction(exp, history, 2).scores == (score,)


def test_without_any_objective_the_final_training_takes_the_last_evaluated_network() -> None:
    """No iteration has a score to compare: the final network is the one the last iteration trained."""
    trained, final = run_construction(experiment({"iterations": "3"}), [None, None, None])
    assert len(trained) == 3
    assert final["architecture"] == trained[-1] and final["epochs"] == "10"


@pytest.mark.parametrize("final_network, built_after", [("best", 0), ("last", 1)])
def test_a_network_is_built_after_the_last_iteration_only_for_final_network_last(final_network: str,
                                                                                  built_after: int) -> None:
    """The construction holds the network each iteration trained; with final_network=last also the one built
    from the last iteration's statistics, which the final training trains."""
    exp = experiment({"iterations": "3", "final_network": final_network})
    history = construction_history(exp, [0.7, 0.8, 0.75])
    state = EnvelopeNet().construction(exp, history, len(history))
    assert state.final and state.scores == (0.7, 0.8, 0.75)
    assert [encode(n) for n in state.networks[:3]] == [t.assignments["architecture"] for t in history]
    assert len(state.networks) == 3 + built_after


def test_a_tie_with_the_best_is_no_improvement_for_patience() -> None:
    trained, final = run_construction(experiment({"iterations": "5", "patience": "1"}), [0.70, 0.80, 0.80, 0.9])
    assert len(trained) == 3 and final["architecture"] == trained[1]  # the tie at iteration 2 ends it


def test_unreadable_phase_starts_are_ignored_and_a_start_index_belongs_to_its_phase() -> None:
    from katib_nas.suggestion.core.algorithms.envelopenet.schedule import parse_phase_starts, phase_of

    starts = parse_phase_starts("0-0_x-3_2-_-4_1-5_1-9")
    assert starts == {0: 0, 1: 5}  # unreadable pairs dropped; the first start of a phase kept
    assert [phase_of(index, starts) for index in (0, 4, 5, 6)] == [0, 0, 1, 1]
    assert phase_of(3, {1: 4}) is None
    exp = experiment({"phase_starts": "0-0_x-3_1-"})
    assert len(ask(exp, [], 1, 0)) == 1  # a damaged state is not an error for Katib


def test_a_vanished_trial_at_the_first_index_of_an_iteration_is_that_iterations_failure() -> None:
    exp = experiment({"replicas": "1", "max_retries": "0"}, parallel=1)
    [first], exp = ask_with_state(exp, [], 1, 0)
    history = [finished(first, "t0")]
    [second], exp = ask_with_state(exp, history, 1, 1)
    assert decode_seed(second["seed"])[1] == 1 and exp.settings["phase_starts"].endswith("1-1")
    # trial 1, iteration 1's first, vanishes: iteration 1 failed once, more than max_retries=0
    with pytest.raises(ConstructionError, match=r"iteration 1 failed 1 times.*missing from Katib's request"):
        ask_with_state(exp, history, 1, 2)


def test_a_vanished_final_training_trial_is_a_failure_of_the_final_training() -> None:
    """A final-training trial Katib leaves out of the request (metrics unavailable) counts against max_retries
    of the final training."""
    exp = experiment({"iterations": "1", "replicas": "1", "max_retries": "0"})
    [first], exp = ask_with_state(exp, [], 1, 0)
    history = [finished(first, "t0")]
    [final], exp = ask_with_state(exp, history, 1, 1)
    assert final["epochs"] == "10"
    # the final trial ends metrics-unavailable, and Katib leaves it out of the request
    with pytest.raises(ConstructionError, match=r"the final training failed 1 times.*missing from Katib's request"):
        ask_with_state(exp, history, 1, 2)


def test_without_recorded_phase_starts_a_trial_missing_after_the_last_iterations_trials_is_the_current_ones(
        ) -> None:
    """An experiment from before phase starts were kept: a missing index after every trial of the completed
    iterations is charged to the current iteration, even while a later trial of it runs."""
    exp = experiment({"iterations": "2", "replicas": "1", "max_retries": "0"}, parallel=2)
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "t0")]
    lost, later = ask(exp, history, 2, 1)
    assert decode_seed(lost["seed"])[1] == decode_seed(later["seed"])[1] == 1
    with pytest.raises(ConstructionError, match=r"iteration 1 failed 1 times.*missing from Katib's request"):
        ask(exp, history + [running(later, "t2")], 1, 3)


def test_a_trial_whose_seed_is_not_a_number_does_not_hide_the_trials_after_it() -> None:
    """A foreign trial sorting first, with a seed that is not a number, is skipped; the construction goes on."""
    exp = experiment()
    [first] = ask(exp, [], 1, 0)
    history = [finished(first, "b")]
    foreign = make_trial("a", {"architecture": "garbage", "seed": "not-a-number"}, "FAILED", [])
    [proposal] = ask(exp, [foreign] + history, 1, 1)
    assert decode_seed(proposal["seed"]) == (0, 1, 1)
    assert proposal == ask(exp, history, 1, 1)[0]


def test_an_experiment_numbers_at_most_ten_thousand_suggestions() -> None:
    """A seed holds the suggestion index below 10,000: the suggestion with index 9,999 is proposed, a request
    that would reach past it is refused."""
    exp = experiment()
    # 9,999 trials of this experiment's seeds that trained another network: kept by Katib, ignored here
    others = [make_trial(f"t{index:04d}", {"architecture": "in8x8x1-cls10-stem4/w4:c3", "epochs": "1",
                                           "seed": str(index)}, "FAILED", []) for index in range(9999)]
    [last] = ask(exp, others, 1, 9999)
    assert decode_seed(last["seed"]) == (0, 0, 9999)
    with pytest.raises(InvalidInput, match="at most 10000 trials per experiment; this request would reach 10001"):
        ask(exp, others, 2, 9999)


def test_the_construction_view_without_a_first_index_follows_the_history_alone() -> None:
    """construction() without first_index: nothing is missing from a fresh experiment, and the next index
    follows the trials in the history."""
    exp = experiment()
    fresh = EnvelopeNet().construction(exp, [])
    assert fresh.next_index == 0 and fresh.current.failures == [] and not fresh.final
    [first] = ask(exp, [], 1, 0)
    state = EnvelopeNet().construction(exp, [running(first, "a")])
    assert state.next_index == 1 and state.current.pending == [0] and state.current.failures == []
