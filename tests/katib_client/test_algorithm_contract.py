"""The contract every registered algorithm keeps, checked for each over Katib's own client and a real server.

For every algorithm of the registry (suggestion.core.algorithms.ALGORITHMS), through kubeflow-katib's stubs
and a `katib-nas serve` on loopback: every example Experiment that uses it answers its recorded requests
with the recorded replies (tests/algorithm_trace.py); the same request is answered the same twice and after
a server restart; exactly as many proposals as asked, each with the assignments its algorithm declares and
each value readable by the trial side (the shared codec, the one-shot search settings); and every bad setting
and bad search space is INVALID_ARGUMENT naming what is wrong, from ValidateAlgorithmSettings and from
GetSuggestions alike. A new algorithm is held to all of it as soon as it is registered and has an example.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import grpc
import pytest
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.proto import api_pb2
from katib_nas.suggestion.core.algorithms import ALGORITHMS
from katib_nas.suggestion.core.settings import describe_settings
from katib_nas.suggestion.service.convert import experiment_info

from .. import algorithm_trace
from ..algorithm_trace import TRACES, example_experiment, examples, load, without_name_tokens
from ..serve_process import HANG_GUARD_SECONDS, ServeProcess, start_serve
from ..support.assignment_readers import READERS


def algorithm_of(example: str) -> str:
    return example_experiment(example).spec.algorithm.algorithm_name


EXAMPLES = examples()
BY_ALGORITHM = {name: [e for e in EXAMPLES if algorithm_of(e) == name] for name in sorted(ALGORITHMS)}


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    running = start_serve()
    yield running
    assert running.stop() == 0


def suggest(server: ServeProcess, request: Any) -> Any:
    return pb_grpc.SuggestionStub(server.channel).GetSuggestions(request, timeout=HANG_GUARD_SECONDS)


def declared_names(experiment: Any) -> list[str]:
    """The assignment names the experiment's algorithm declares, for the experiment as the server reads it."""
    info = experiment_info(api_pb2.Experiment.FromString(experiment.SerializeToString()))
    return sorted(ALGORITHMS[info.algorithm]().assignment_names(info))


def test_every_algorithm_has_an_example_and_every_example_a_trace() -> None:
    assert all(BY_ALGORITHM.values()), {name: examples for name, examples in BY_ALGORITHM.items() if not examples}
    assert sorted(path.stem for path in TRACES.glob("*.json")) == EXAMPLES, "record traces: python -m " \
                                                                           "tests.algorithm_trace"


@pytest.mark.parametrize("example", EXAMPLES)
def test_recorded_requests_get_the_recorded_replies(server: ServeProcess, example: str) -> None:
    for round_index, (request, reply) in enumerate(load(example)):
        assert without_name_tokens(suggest(server, request)) == without_name_tokens(reply), \
            f"{example}: round {round_index} answered differently"


def test_the_recorded_conversations_are_what_katib_would_send_now() -> None:
    """The traces' requests still follow from their replies (so they cover what the examples now say)."""
    for example in EXAMPLES:
        recorded = load(example)
        replies = iter(reply for _, reply in recorded)
        rebuilt = algorithm_trace.conversation(example, lambda request: next(replies))
        assert [request for request, _ in rebuilt] == [request for request, _ in recorded], example


def test_the_same_request_twice_and_after_a_restart_gets_the_same_reply() -> None:
    requests = [load(example)[-1][0] for example in EXAMPLES]
    first = start_serve()
    try:
        replies = [without_name_tokens(suggest(first, request)) for request in requests]
        assert [without_name_tokens(suggest(first, request)) for request in requests] == replies
    finally:
        assert first.stop() == 0
    restarted = start_serve()
    try:
        assert [without_name_tokens(suggest(restarted, request)) for request in requests] == replies
    finally:
        assert restarted.stop() == 0


@pytest.mark.parametrize("count", [1, 4, 9])
@pytest.mark.parametrize("example", EXAMPLES)
def test_exactly_as_many_proposals_as_asked_each_readable_by_the_trial(server: ServeProcess, example: str,
                                                                      count: int) -> None:
    request = copy.deepcopy(load(example)[-1][0])
    request.current_request_number = count
    request.total_request_number = len(request.trials) + count
    reply = suggest(server, request)
    assert len(reply.parameter_assignments) == count
    names = declared_names(request.experiment)
    for entry in reply.parameter_assignments:
        assert sorted(assignment.name for assignment in entry.assignments) == names
        for assignment in entry.assignments:
            assert assignment.name in READERS, f"no reader for the assignment {assignment.name}: add it to READERS"
            READERS[assignment.name](assignment.value)


def bad_settings() -> list[tuple[str, str, str]]:
    """(algorithm, setting, value) for every setting the parser checks: a value no setting allows, and a name
    no algorithm knows."""
    cases = []
    for name, algorithm in sorted(ALGORITHMS.items()):
        for setting, _default, allowed, _help in describe_settings(algorithm.settings_class):
            if allowed != "text":
                cases.append((name, setting, "x§"))
        cases.append((name, "colour", "1"))
    return cases


def with_setting(example: str, setting: str, value: str) -> Any:
    experiment = example_experiment(example)
    settings = experiment.spec.algorithm.algorithm_settings
    kept = [s for s in settings if s.name != setting]
    del settings[:]
    settings.extend(kept + [pb.AlgorithmSetting(name=setting, value=value)])
    return experiment


def assert_invalid_argument(server: ServeProcess, experiment: Any, message: str) -> None:
    stub = pb_grpc.SuggestionStub(server.channel)
    calls = [lambda: stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment),
                                                    timeout=HANG_GUARD_SECONDS),
             lambda: stub.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment, current_request_number=1),
                                         timeout=HANG_GUARD_SECONDS)]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert message in info.value.details()


@pytest.mark.parametrize("algorithm, setting, value", bad_settings(), ids=[f"{a}-{s}" for a, s, _ in bad_settings()])
def test_a_bad_setting_is_invalid_argument_naming_it(server: ServeProcess, algorithm: str, setting: str,
                                                      value: str) -> None:
    assert_invalid_argument(server, with_setting(BY_ALGORITHM[algorithm][0], setting, value), setting)


def no_nas_config(experiment: Any) -> None:
    experiment.spec.ClearField("nas_config")


def no_layers(experiment: Any) -> None:
    experiment.spec.nas_config.graph_config.num_layers = 0


def unknown_operation(experiment: Any) -> None:
    experiment.spec.nas_config.operations.operation[0].operation_type = "teleport"


def no_operations(experiment: Any) -> None:
    experiment.spec.nas_config.operations.ClearField("operation")


def no_input_size(experiment: Any) -> None:
    del experiment.spec.nas_config.graph_config.input_sizes[:]


SPACES = [(no_nas_config, "nasConfig"), (no_layers, "numLayers"), (unknown_operation, "teleport"),
          (no_operations, "operations"), (no_input_size, "inputSizes")]


@pytest.mark.parametrize("change, message", SPACES, ids=[change.__name__ for change, _ in SPACES])
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_bad_search_space_is_invalid_argument_naming_it(server: ServeProcess, algorithm: str, change: Any,
                                                          message: str) -> None:
    experiment = example_experiment(BY_ALGORITHM[algorithm][0])
    change(experiment)
    assert_invalid_argument(server, experiment, message)
