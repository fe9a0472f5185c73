"""The suggestion server as Katib's controller sees it: kubeflow-katib's stubs over loopback."""

from __future__ import annotations

import signal
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from ..conftest import KATIB_FIXTURES, load_yaml
from ..serve_process import HANG_GUARD_SECONDS, start_serve
from .conftest import HEALTH_SERVICE, Server, example_experiment, experiment_from_yaml, start_server, stop_server, trial

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", [HEALTH_SERVICE, ""])
def test_health_reports_serving(server: Server, service: str) -> None:
    assert server.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == SERVING


def test_validate_then_suggest_exactly_the_requested_count(server: Server) -> None:
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    server.suggestion.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=10)
    for requested in (1, 2, 5):
        reply = server.suggestion.GetSuggestions(
            pb.GetSuggestionsRequest(experiment=experiment, current_request_number=requested,
                                     total_request_number=requested), timeout=10)
        assert len(reply.parameter_assignments) == requested
        for entry in reply.parameter_assignments:
            assert [a.name for a in entry.assignments] == ["architecture"]
            assert entry.assignments[0].value.startswith("in28x28x1-cls10-")


def test_restarted_server_proposes_the_same(server: Server) -> None:
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    history = [trial("t0", {"architecture": "in28x28x1-cls10-stem16/w32:c3"}, pb.TrialStatus.SUCCEEDED,
                     {"Validation-Accuracy": "0.8"})]
    request = pb.GetSuggestionsRequest(experiment=experiment, trials=history, current_request_number=3,
                                       total_request_number=4)
    first = server.suggestion.GetSuggestions(request, timeout=10)
    assert stop_server(server) == 0
    restarted = start_server()
    try:
        assert pb_grpc_reply(restarted, request) == first
    finally:
        stop_server(restarted)


def pb_grpc_reply(server: Server, request: pb.GetSuggestionsRequest) -> pb.GetSuggestionsReply:
    return server.suggestion.GetSuggestions(request, timeout=10)


def test_katib_enas_experiment_is_accepted_as_it_is_with_nas_random(server: Server) -> None:
    document = load_yaml(KATIB_FIXTURES / "enas-experiment.yaml")
    document["spec"]["algorithm"]["algorithmName"] = "nas-random"
    experiment = experiment_from_yaml(document)
    server.suggestion.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=10)
    reply = server.suggestion.GetSuggestions(
        pb.GetSuggestionsRequest(experiment=experiment, current_request_number=2), timeout=10)
    assert len(reply.parameter_assignments) == 2


def test_unknown_algorithm_is_invalid_argument_naming_known_ones(server: Server) -> None:
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    experiment.spec.algorithm.algorithm_name = "enas"
    for call, request in [
        (server.suggestion.ValidateAlgorithmSettings, pb.ValidateAlgorithmSettingsRequest(experiment=experiment)),
        (server.suggestion.GetSuggestions, pb.GetSuggestionsRequest(experiment=experiment, current_request_number=1)),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown algorithm 'enas'" in info.value.details() and "nas-random" in info.value.details()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: setattr(next(s for s in e.spec.algorithm.algorithm_settings if s.name == "seed"), "value", "x"),
         "setting seed='x'"),
        (lambda e: e.spec.algorithm.algorithm_settings.add(name="seed", value="2"), "'seed' for algorithm nas-random "
                                                                                  "is given more than once"),
        (lambda e: e.spec.algorithm.algorithm_settings.add(name="colour", value="1"), "unknown setting 'colour'"),
        (lambda e: e.spec.ClearField("nas_config"), "has no nasConfig"),
        (lambda e: e.spec.nas_config.operations.operation[0].parameter_specs.parameters[0].feasible_space.list.append(
            "four"), "must be an integer"),
    ],
)
def test_bad_settings_and_nas_config_are_invalid_argument(server: Server, mutate, message: str) -> None:
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    mutate(experiment)
    with pytest.raises(grpc.RpcError) as info:
        server.suggestion.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment),
                                                    timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_messy_history_never_yields_unknown(server: Server) -> None:
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    values = ["unavailable", "nan", "inf", "", "0.91", "Genotype(x)", "-1e999"]
    history = [trial(f"t{i}", {"architecture": "garbage", "extra": "1"}, i % 8, {"Validation-Accuracy": v})
               for i, v in enumerate(values * 4)]
    history.append(pb.Trial(name="empty"))
    reply = server.suggestion.GetSuggestions(
        pb.GetSuggestionsRequest(experiment=experiment, trials=history, current_request_number=2,
                                 total_request_number=len(history) + 2), timeout=10)
    assert len(reply.parameter_assignments) == 2


def test_sigterm_reports_not_serving_finishes_calls_and_exits_zero() -> None:
    server = start_serve("--grace", "600")
    experiment = example_experiment("nas-random-fashion-mnist.yaml")
    history = [trial(f"t{i}", {"architecture": f"in28x28x1-cls10-stem16/w{i % 999 + 1}:c3"}, pb.TrialStatus.SUCCEEDED,
                     {"Validation-Accuracy": "0.5"}) for i in range(20000)]
    request = pb.GetSuggestionsRequest(experiment=experiment, trials=history, current_request_number=1000)
    suggestion = pb_grpc.SuggestionStub(server.channel)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(len(suggestion.GetSuggestions(request, timeout=HANG_GUARD_SECONDS).parameter_assignments))
        except grpc.RpcError as err:
            results.append(err)

    health = health_pb2_grpc.HealthStub(server.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=HANG_GUARD_SECONDS)
    assert next(watch).status == SERVING
    worker = threading.Thread(target=call)
    worker.start()
    server.wait_for_log("GetSuggestions started")  # the call is in flight
    server.process.send_signal(signal.SIGTERM)
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    worker.join()
    assert server.process.wait(timeout=HANG_GUARD_SECONDS) == 0
    assert results == [1000]
    log = server.log()
    [call_line] = server.wait_for_log("GetSuggestions experiment=")
    assert "experiment=nas-random-fashion-mnist algorithm=nas-random requested=1000 trials=20000 ms=" in call_line
    assert call_line.endswith("outcome=ok")
    assert log.index("received SIGTERM") < log.index(call_line), "the call was not in flight at SIGTERM"
