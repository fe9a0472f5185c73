"""Fuzzing the suggestion server as Katib's controller reaches it: kubeflow-katib's stubs, a real `katib-nas serve`.

For every algorithm and mode, hypothesis draws requests around the project's example Experiment: nasConfigs
with odd sizes, types, parameters and values; settings with odd values, unknown names and names given twice;
histories with every trial condition (and unknown ones), metric strings such as nan, inf, "", 1e309, -0,
unicode digits and very long text, duplicate trial names, odd labels, and trials built from the server's own
proposals with odd metrics; odd request counts. The only answers allowed are OK with exactly the requested
number of assignments, each readable by the trial, or INVALID_ARGUMENT with a message; the unchanged example
Experiment must be valid, and answered OK for any count Katib may ask (whatever the history, but for
envelopenet only at a fresh start). Health checks run throughout and must all be answered SERVING. Counts are
bounded (MAX_EXAMPLES per mode); no example has a deadline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.contract.branch_stats import format_branch_stats, format_skip_gates
from katib_nas.contract.codec import decode
from katib_nas.suggestion.core.algorithms import ALGORITHMS
from katib_nas.suggestion.core.engine import MAX_REQUEST

from ..serve_process import HANG_GUARD_SECONDS, HEALTH_SERVICE, ServeProcess, start_serve
from ..support.assignment_readers import READERS
from .conftest import example_experiment

MAX_EXAMPLES = 60
#: OK replies each mode must get, so the checks on OK replies cannot pass vacuously.
MIN_OK_REPLIES = 3
#: Algorithms that answer OK for a valid Experiment whatever its history (envelopenet refuses a history whose
#: phase failed too often or that numbers more trials than it allows).
ANY_HISTORY = {"nas-random", "proxylessnas"}
MODES = {
    "nas-random": "nas-random-fashion-mnist.yaml",
    "envelopenet": "envelopenet-fashion-mnist.yaml",
    "proxylessnas-oneshot": "proxylessnas-oneshot-fashion-mnist.yaml",
    "proxylessnas-reinforce": "proxylessnas-reinforce-fashion-mnist.yaml",
}
ODD_TEXT = ["", "nan", "NaN", "inf", "-inf", "1e309", "-1e309", "1e308", "-1e308", "1e-300", "-0", "0", "1", "2",
            "3", "0.5", "-1", "²", "١٢", "1_0", " 7 ", "7\n", "x" * 5000, "\x00", "é", "unavailable", "Genotype(x)",
            "99999999999999999999", "2147483648", "0x10", "9" * 5000, "1,2", "all", "none", "true"]
texts = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=12))
METRIC_NAMES = ["Validation-Accuracy", "latency-ms", "Branch-Stats", "Skip-Gates", "Validation-Loss", "", "x"]
LABEL_NAMES = ["proxylessnas-index", "katib-nas-envelopenet-phase", "other"]
OPERATION_TYPES = ["convolution", "separable_convolution", "depthwise_convolution", "dilated_convolution",
                   "reduction", "max_pooling", "mbconv", "zero", "skip_connection", "attention", ""]
PARAMETER_NAMES = ["filter_size", "kernel_size", "num_filter", "stride", "depth_multiplier", "expand_ratio",
                   "pool_size", "reduction_type", "colour"]
#: Branch statistics and gates a trial reports, odd ones included, up to the float limit.
STATISTICS = st.one_of(st.sampled_from([float("nan"), float("inf"), -0.0, 0.0, 1e-300, 1e300, -1e300, 1e308, -1e308]),
                       st.floats(-1e6, 1e6, allow_nan=False))


@dataclass
class HealthProbe:
    """Health checks sent one after another from a thread while the fuzzer runs; every status answered."""

    channel: grpc.Channel
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        while not self.stop.is_set():
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=HANG_GUARD_SECONDS)
                self.statuses.append(reply.status)
            except grpc.RpcError as err:
                self.errors.append(f"{err.code()}: {err.details()}")
            self.stop.wait(0.2)  # pacing only


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    running = start_serve("--workers", "2")
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def proposals(server: ServeProcess) -> dict[str, list[pb.ParameterAssignments]]:
    """The server's own first proposals for each mode's example, to build realistic histories from."""
    stub = pb_grpc.SuggestionStub(server.channel)
    found = {}
    for mode, name in MODES.items():
        request = pb.GetSuggestionsRequest(experiment=example_experiment(name), current_request_number=3,
                                           total_request_number=3)
        found[mode] = list(stub.GetSuggestions(request, timeout=HANG_GUARD_SECONDS).parameter_assignments)
    return found


@st.composite
def settings_changes(draw: st.DrawFn, known: list[str]) -> list[tuple[str, str]]:
    names = st.sampled_from(known + ["bogus", ""])
    return draw(st.lists(st.tuples(names, texts), max_size=3))


def apply_settings(experiment: pb.Experiment, changes: list[tuple[str, str]], append: bool) -> None:
    current = experiment.spec.algorithm.algorithm_settings
    for name, value in changes:
        existing = next((s for s in current if s.name == name), None)
        if existing is not None and not append:
            existing.value = value
        else:
            current.add(name=name, value=value)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([0, 1, 2, 3, 4, 99]))
    return {"name": draw(st.sampled_from(PARAMETER_NAMES)), "type": kind,
            "min": draw(texts), "max": draw(texts), "step": draw(texts),
            "list": draw(st.lists(st.one_of(texts, st.sampled_from(["1", "3", "5", "32", "max_pooling"])),
                                  max_size=6))}


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    return {"type": draw(st.sampled_from(OPERATION_TYPES)), "parameters": draw(st.lists(parameters(), max_size=3))}


def change_nas_config(experiment: pb.Experiment, change: dict[str, Any]) -> None:
    graph = experiment.spec.nas_config.graph_config
    if "num_layers" in change:
        graph.num_layers = change["num_layers"]
    if "input_sizes" in change:
        del graph.input_sizes[:]
        graph.input_sizes.extend(change["input_sizes"])
    if "output_sizes" in change:
        del graph.output_sizes[:]
        graph.output_sizes.extend(change["output_sizes"])
    for spec in change.get("operations", []):
        operation = experiment.spec.nas_config.operations.operation.add(operation_type=spec["type"])
        for parameter in spec["parameters"]:
            added = operation.parameter_specs.parameters.add(name=parameter["name"])
            added.parameter_type = parameter["type"]
            space = added.feasible_space
            space.min, space.max, space.step = parameter["min"], parameter["max"], parameter["step"]
            space.list.extend(parameter["list"])
    if change.get("drop_operations"):
        del experiment.spec.nas_config.operations.operation[:change["drop_operations"]]


int32 = st.one_of(st.integers(-2, 70), st.sampled_from([2**31 - 1, -(2**31), 4096, 4097, 10**7, 100001]))
nas_config_changes = st.fixed_dictionaries({}, optional={
    "num_layers": int32,
    "input_sizes": st.lists(int32, max_size=4),
    "output_sizes": st.lists(int32, max_size=2),
    "operations": st.lists(operations(), max_size=2),
    "drop_operations": st.integers(0, 3),
})


@st.composite
def odd_trial(draw: st.DrawFn, names: list[str]) -> pb.Trial:
    trial = pb.Trial(name=draw(st.sampled_from(names)))
    for key in draw(st.lists(st.sampled_from(["architecture", "seed", "epochs", "search", "extra"]), max_size=3)):
        trial.spec.parameter_assignments.assignments.add(name=key, value=draw(texts))
    trial.status.condition = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 99]))
    for metric in draw(st.lists(st.sampled_from(METRIC_NAMES), max_size=4)):
        trial.status.observation.metrics.add(name=metric, value=draw(texts))
    for label in draw(st.lists(st.sampled_from(LABEL_NAMES), max_size=2)):
        trial.spec.labels[label] = draw(texts)
    return trial


@st.composite
def trial_from_proposal(draw: st.DrawFn, proposal: pb.ParameterAssignments, names: list[str]) -> pb.Trial:
    """A trial that ran one of the server's proposals, with realistic and odd metrics; named as the proposal asked
    (or at random), and without its labels, which Katib puts on the Trial only."""
    trial = pb.Trial(name=proposal.trial_name or draw(st.sampled_from(names)))
    trial.spec.parameter_assignments.CopyFrom(pb.TrialSpec.ParameterAssignments(assignments=proposal.assignments))
    trial.status.condition = draw(st.sampled_from([pb.TrialStatus.SUCCEEDED] * 3 + [1, 4, 5, 99]))
    metrics = trial.status.observation.metrics
    metrics.add(name="Validation-Accuracy", value=draw(st.one_of(texts, st.sampled_from(["0.8", "0.9", "0.1"]))))
    metrics.add(name="latency-ms", value=draw(st.one_of(texts, st.sampled_from(["1.2", "0.7", "3"]))))
    architecture = next((a.value for a in proposal.assignments if a.name == "architecture"), "")
    cells = decode(architecture).cells
    branch_stats = [[draw(STATISTICS) for _ in cell.ops] for cell in cells]
    gates = [[draw(STATISTICS) for _ in cell.skips] for cell in cells]
    metrics.add(name="Branch-Stats", value=draw(st.one_of(st.just(format_branch_stats(branch_stats)), texts)))
    metrics.add(name="Skip-Gates", value=draw(st.one_of(st.just(format_skip_gates(gates)), texts)))
    return trial


@st.composite
def requests(draw: st.DrawFn, mode: str, proposals: list[pb.ParameterAssignments]) -> pb.GetSuggestionsRequest:
    experiment = example_experiment(MODES[mode])
    known = [s.name for s in experiment.spec.algorithm.algorithm_settings]
    # Each part is changed in a minority of examples, so most requests reach the algorithm with an odd history.
    if draw(st.integers(0, 2)) == 0:
        apply_settings(experiment, draw(settings_changes(known)), append=draw(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        change_nas_config(experiment, draw(nas_config_changes))
    if draw(st.integers(0, 9)) == 0:
        experiment.spec.objective.type = draw(st.sampled_from([0, 1, 99]))
    if draw(st.integers(0, 19)) == 0:
        experiment.spec.algorithm.algorithm_name = draw(texts)
    if draw(st.integers(0, 19)) == 0:
        experiment.name = draw(texts)
    names = [f"{experiment.name}-t{i}" for i in range(6)] + ["", "é", "x" * 300]
    trials = st.one_of(odd_trial(names), *(trial_from_proposal(p, names) for p in proposals))
    history = draw(st.lists(trials, max_size=12))
    odd_count = draw(st.integers(0, 4)) == 0
    count = draw(st.integers(-3, 1100) if odd_count else st.sampled_from([0, 1, 2, 3, 5]))
    total = draw(st.one_of(st.just(len(history) + count), st.integers(-3, 20000)))
    return pb.GetSuggestionsRequest(experiment=experiment, trials=history, current_request_number=count,
                                    total_request_number=total)


def answer(call: Any, request: Any) -> Any | None:
    """The reply when OK; None when INVALID_ARGUMENT with a message. Any other answer fails."""
    try:
        return call(request, timeout=HANG_GUARD_SECONDS)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
        assert err.details().strip(), "INVALID_ARGUMENT without a message"
        return None


def must_be_answered(request: pb.GetSuggestionsRequest, original: pb.Experiment) -> bool:
    """Whether OK is the only right answer: the example Experiment unchanged, a count Katib may ask, and a
    history its algorithm takes (any, or a fresh start: no trials and no suggestions before)."""
    if request.experiment != original or not 0 <= request.current_request_number <= MAX_REQUEST:
        return False
    fresh = not request.trials and request.total_request_number <= request.current_request_number
    return fresh or original.spec.algorithm.algorithm_name in ANY_HISTORY


def test_every_registered_algorithm_is_fuzzed() -> None:
    assert {example_experiment(name).spec.algorithm.algorithm_name for name in MODES.values()} == set(ALGORITHMS)


@pytest.mark.parametrize("mode", list(MODES))
def test_fuzzed_requests_get_ok_with_the_exact_count_or_invalid_argument(
        server: ServeProcess, proposals: dict[str, list[pb.ParameterAssignments]], mode: str) -> None:
    stub = pb_grpc.SuggestionStub(server.channel)
    original = example_experiment(MODES[mode])
    ok_replies: list[pb.GetSuggestionsReply] = []
    probe = HealthProbe(server.channel)
    checker = threading.Thread(target=probe.run)
    checker.start()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(request=requests(mode, proposals[mode]))
    @example(request=pb.GetSuggestionsRequest(experiment=original, current_request_number=2, total_request_number=2))
    def check(request: pb.GetSuggestionsRequest) -> None:
        validation = pb.ValidateAlgorithmSettingsRequest(experiment=request.experiment)
        assert answer(stub.ValidateAlgorithmSettings, validation) is not None or request.experiment != original, \
            "the example Experiment was refused"
        reply = answer(stub.GetSuggestions, request)
        if reply is None:
            assert not must_be_answered(request, original), \
                f"the example Experiment was refused {request.current_request_number} proposals"
            return
        assert len(reply.parameter_assignments) == request.current_request_number
        for entry in reply.parameter_assignments:
            assert entry.assignments
            for assignment in entry.assignments:
                assert assignment.name in READERS, f"no reader for the assignment {assignment.name}"
                READERS[assignment.name](assignment.value)
        ok_replies.append(reply)

    try:
        check()
    finally:
        probe.stop.set()
        checker.join()
    assert len(ok_replies) >= MIN_OK_REPLIES, f"only {len(ok_replies)} requests answered OK"
    assert probe.errors == [] and probe.statuses, (probe.errors, len(probe.statuses))
    assert set(probe.statuses) == {health_pb2.HealthCheckResponse.SERVING}
