"""Requests the other suggestion tests never send, through kubeflow-katib's stubs to a server on loopback.

A broken algorithm (registered for the test on a server started in this process) answers GetSuggestions with
INTERNAL (Katib retries) and ValidateAlgorithmSettings with UNKNOWN (Katib fails the validation; INTERNAL would
pass it), with a short readable message; Katib's request counts after deleted or skipped trials pick the right
first suggestion; MINIMIZE reaches the algorithms; a request over gRPC's 4 MiB default is served, and one over
`--max-message-mb` is refused.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Iterator

import grpc
import pytest
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.proto import api_pb2
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.service.convert import experiment_info, trial_record
from katib_nas.suggestion.service.server import start_server, stop_server

from ..serve_process import HANG_GUARD_SECONDS, ServeProcess, start_serve
from ..support.faulty_algorithm import FAULTS, register_faults
from .conftest import example_experiment, trial

NAS_RANDOM = "nas-random-fashion-mnist.yaml"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def in_process() -> Iterator[pb_grpc.SuggestionStub]:
    """The server's own start_server (default options) on a loop in a thread, with FAULTS registered."""
    with pytest.MonkeyPatch.context() as patch:
        register_faults(patch)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        running = asyncio.run_coroutine_threadsafe(start_server("127.0.0.1", 0, 1), loop).result(HANG_GUARD_SECONDS)
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        try:
            yield pb_grpc.SuggestionStub(channel)
        finally:
            channel.close()
            asyncio.run_coroutine_threadsafe(stop_server(running, 0), loop).result(HANG_GUARD_SECONDS)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(HANG_GUARD_SECONDS)
            loop.close()


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    running = start_serve()
    yield running
    assert running.stop() == 0


def suggest(stub: pb_grpc.SuggestionStub, request: pb.GetSuggestionsRequest) -> pb.GetSuggestionsReply:
    return stub.GetSuggestions(request, timeout=HANG_GUARD_SECONDS)


def refused(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=HANG_GUARD_SECONDS)
    return info.value


@pytest.mark.parametrize("key", list(FAULTS))
def test_a_broken_algorithm_is_internal_with_a_short_readable_message(in_process: pb_grpc.SuggestionStub,
                                                                      key: str) -> None:
    """Each way an algorithm can break answers INTERNAL, on which Katib calls GetSuggestions again."""
    experiment = example_experiment(NAS_RANDOM)
    experiment.spec.algorithm.algorithm_name = f"fault-{key}"
    error = refused(in_process.GetSuggestions, pb.GetSuggestionsRequest(experiment=experiment,
                                                                        current_request_number=2))
    assert error.code() == grpc.StatusCode.INTERNAL, error.details()
    kind = "AlgorithmBug" if key.startswith("raises") else "AlgorithmFault"
    assert error.details().startswith(f"GetSuggestions failed: {kind}: {FAULTS[key].message}")
    assert len(error.details().encode()) <= 1000


def test_a_long_internal_message_is_cut_and_says_so(in_process: pb_grpc.SuggestionStub) -> None:
    experiment = example_experiment(NAS_RANDOM)
    experiment.spec.algorithm.algorithm_name = "fault-raises-long"
    error = refused(in_process.GetSuggestions, pb.GetSuggestionsRequest(experiment=experiment,
                                                                        current_request_number=1))
    assert error.code() == grpc.StatusCode.INTERNAL  # not RESOURCE_EXHAUSTED from a 40 KB trailer
    assert error.details().endswith("bytes, cut)") and len(error.details().encode()) <= 1000


def test_validate_that_raises_fails_the_validation(in_process: pb_grpc.SuggestionStub) -> None:
    """Katib's ValidateAlgorithmSettings client fails the Experiment on INVALID_ARGUMENT or UNKNOWN and takes
    every other code as settings that passed (pkg/controller.v1beta1/suggestion/suggestionclient)."""
    experiment = example_experiment(NAS_RANDOM)
    experiment.spec.algorithm.algorithm_name = "fault-count"
    experiment.spec.algorithm.algorithm_settings.add(name="validate", value="raise")
    error = refused(in_process.ValidateAlgorithmSettings, pb.ValidateAlgorithmSettingsRequest(experiment=experiment))
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details() == "ValidateAlgorithmSettings failed: AlgorithmBug: validate broke"


def history(count: int) -> list[pb.Trial]:
    return [trial(f"t{i}", {"architecture": f"in28x28x1-cls10-stem16/w{i + 8}:c3"}, pb.TrialStatus.SUCCEEDED,
                  {"Validation-Accuracy": "0.5"}) for i in range(count)]


def engine_answer(request: pb.GetSuggestionsRequest, first_index: int) -> list[dict[str, str]]:
    """The engine's proposals for the request's experiment and trials, from suggestion `first_index` on."""
    as_server = api_pb2.GetSuggestionsRequest.FromString(request.SerializeToString())
    return engine.suggest(experiment_info(as_server.experiment), [trial_record(t) for t in as_server.trials],
                          as_server.current_request_number, first_index).assignments


def assignments(reply: pb.GetSuggestionsReply) -> list[dict[str, str]]:
    return [{a.name: a.value for a in entry.assignments} for entry in reply.parameter_assignments]


def test_first_suggestion_counts_the_suggestions_katib_made_not_the_trials_it_sends(served: ServeProcess) -> None:
    """Katib sends total = suggestions made + current; trials it deleted or skips (metrics unavailable) are gone."""
    request = pb.GetSuggestionsRequest(experiment=example_experiment(NAS_RANDOM), trials=history(3),
                                       current_request_number=2, total_request_number=10)
    expected = engine_answer(request, 8)
    assert expected != engine_answer(request, 3)
    assert assignments(suggest(pb_grpc.SuggestionStub(served.channel), request)) == expected


def test_without_a_total_the_first_suggestion_follows_the_trials(served: ServeProcess) -> None:
    """total_request_number 0 (a client that sets only the current count): one suggestion per trial so far."""
    request = pb.GetSuggestionsRequest(experiment=example_experiment(NAS_RANDOM), trials=history(3),
                                       current_request_number=2)
    expected = engine_answer(request, 3)
    assert expected != engine_answer(request, 0)
    assert assignments(suggest(pb_grpc.SuggestionStub(served.channel), request)) == expected


def test_minimize_reaches_the_algorithm(served: ServeProcess) -> None:
    """proxylessnas reinforce rewards accuracy: the example is valid, and refused once its objective is MINIMIZE."""
    experiment = example_experiment("proxylessnas-reinforce-fashion-mnist.yaml")
    stub = pb_grpc.SuggestionStub(served.channel)
    stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment),
                                   timeout=HANG_GUARD_SECONDS)
    experiment.spec.objective.type = pb.MINIMIZE
    error = refused(stub.ValidateAlgorithmSettings, pb.ValidateAlgorithmSettingsRequest(experiment=experiment))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the objective Validation-Accuracy must be maximized" in error.details()


def six_mib_request() -> pb.GetSuggestionsRequest:
    """1,600 trials whose architecture text is near the 4,096-byte limit: about 6.3 MiB."""
    request = pb.GetSuggestionsRequest(experiment=example_experiment(NAS_RANDOM), current_request_number=1)
    filler = "in28x28x1-cls10-stem16/w32" + ":c3" * 1300
    request.trials.extend(trial(f"t{i}", {"architecture": filler}, pb.TrialStatus.SUCCEEDED,
                                {"Validation-Accuracy": "0.5"}) for i in range(1600))
    assert request.ByteSize() > 6 * MIB
    return request


def test_a_request_over_grpcs_4_mib_default_is_answered(in_process: pb_grpc.SuggestionStub,
                                                        served: ServeProcess) -> None:
    """Katib sends every trial in each request: start_server's default and `katib-nas serve`'s take 6 MiB."""
    request = six_mib_request()
    for stub in (in_process, pb_grpc.SuggestionStub(served.channel)):
        assert len(suggest(stub, request).parameter_assignments) == 1


def test_a_request_over_max_message_mb_is_resource_exhausted() -> None:
    server = start_serve("--max-message-mb", "1")
    try:
        stub = pb_grpc.SuggestionStub(server.channel)
        error = refused(stub.GetSuggestions, six_mib_request())
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
        small = pb.GetSuggestionsRequest(experiment=example_experiment(NAS_RANDOM), current_request_number=1)
        assert len(suggest(stub, small).parameter_assignments) == 1
    finally:
        assert server.stop() == 0
