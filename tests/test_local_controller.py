"""The controller's conversation with a suggestion service, seen from the service's side.

A recording Suggestion servicer runs on a real gRPC server on loopback; the controller drives real stub-trial
subprocesses against it. This checks what Katib's controller guarantees: request sizes, the trial history
with conditions and observations, settings from replies merged into later requests, and that an answer with
the wrong number of assignments is an error.
"""

from __future__ import annotations

import io
import re
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from katib_nas.proto import api_pb2, api_pb2_grpc
from katib_nas.runner import trial_processes
from katib_nas.runner.controller import Controller, LoopConfig
from katib_nas.runner.manifest import parse_experiment
from katib_nas.runner.progress import ProgressView
from katib_nas.runner.status import Summary
from katib_nas.runner.store import Store, TrialRow
from katib_nas.runner.suggestion_process import SuggestionClient, SuggestionFailure

from .conftest import load_yaml
from .support.local_runner import DIGITS, stub_experiment, trials

ARCHITECTURES = ["in8x8x1-cls10-stem8/w8:c1", "in8x8x1-cls10-stem8/w8:c3", "in8x8x1-cls10-stem8/w16:c3",
                 "in8x8x1-cls10-stem8/w8:s3"]


class RecordingSuggestion(api_pb2_grpc.SuggestionServicer):
    """Answers from a fixed list, returns a growing `calls` setting, and keeps every request."""

    def __init__(self, short_answer: bool = False):
        self.requests: list[api_pb2.GetSuggestionsRequest] = []
        self.short_answer = short_answer

    def GetSuggestions(self, request: api_pb2.GetSuggestionsRequest, context: grpc.ServicerContext):
        self.requests.append(request)
        reply = api_pb2.GetSuggestionsReply()
        count = request.current_request_number - (1 if self.short_answer else 0)
        for _ in range(count):
            text = ARCHITECTURES[len(request.trials) + len(reply.parameter_assignments)]
            reply.parameter_assignments.add().assignments.add(name="architecture", value=text)
        reply.algorithm.algorithm_settings.add(name="calls", value=str(len(self.requests)))
        reply.algorithm.algorithm_settings.add(name="seed", value="42")
        return reply


@pytest.fixture
def servicer(request: pytest.FixtureRequest) -> Iterator[tuple[RecordingSuggestion, str]]:
    fake = RecordingSuggestion(short_answer=getattr(request, "param", False))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_SuggestionServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(None)


def run_controller(tmp_path: Path, address: str, max_trials: int, changes: dict[str, Any] | None = None) -> None:
    spec = parse_experiment(stub_experiment(tmp_path, max_trials=max_trials, parallel=1, changes=changes).read_text())
    store = Store.open(tmp_path / "run")
    store.create_experiment(spec.name, spec.document, "experiment.yaml", {}, [], str(tmp_path))
    service = SuggestionClient.connect(address, tmp_path / "suggestion.log")
    view = ProgressView(spec.max_trial_count, spec.objective.metric, 0, io.StringIO(), live=False)
    try:
        Controller(spec, store, service, LoopConfig((), str(tmp_path)), view).run()
    finally:
        service.stop()
        store.close()


def test_requests_follow_katib(tmp_path: Path, servicer: tuple[RecordingSuggestion, str]) -> None:
    fake, address = servicer
    run_controller(tmp_path, address, max_trials=3)
    requests = fake.requests
    assert [r.current_request_number for r in requests] == [1, 1, 1]
    assert [r.total_request_number for r in requests] == [1, 2, 3]
    assert [len(r.trials) for r in requests] == [0, 1, 2]
    first_settings = [(s.name, s.value) for s in requests[0].experiment.spec.algorithm.algorithm_settings]
    assert first_settings == [("seed", "3"), ("stem_width", "8"), ("default_width", "16")]
    later = [(s.name, s.value) for s in requests[2].experiment.spec.algorithm.algorithm_settings]
    assert later == [("seed", "42"), ("stem_width", "8"), ("default_width", "16"), ("calls", "2")]
    history = requests[2].trials
    assert [t.spec.parameter_assignments.assignments[0].value for t in history] == ARCHITECTURES[:2]
    assert all(t.status.condition == api_pb2.TrialStatus.SUCCEEDED for t in history)
    metrics = {m.name: m.value for m in history[0].status.observation.metrics}
    assert set(metrics) == {"Validation-Accuracy", "Validation-Loss", "latency-ms", "params"}
    assert 0.5 <= float(metrics["Validation-Accuracy"]) < 0.95 and metrics["params"] == "unavailable"
    assert history[0].spec.objective.objective_metric_name == "Validation-Accuracy"
    assert history[0].status.start_time.endswith("Z") and history[0].status.completion_time.endswith("Z")
    store = Store.open_existing(tmp_path / "run")  # the merged settings are kept for a resumed run
    assert ("calls", "3") in store.experiment().suggestion_settings
    store.close()


@pytest.mark.parametrize("servicer", [True], indirect=True)
def test_wrong_number_of_assignments_is_an_error(tmp_path: Path, servicer: tuple[RecordingSuggestion, str]) -> None:
    _, address = servicer
    with pytest.raises(SuggestionFailure, match="answered 0 assignments for 1 requested"):
        run_controller(tmp_path, address, max_trials=2)
    store = Store.open_existing(tmp_path / "run")
    assert store.trials() == []
    store.close()


def trial_conditions_with_program(tmp_path: Path, server: str, text: str) -> tuple[Path, list[tuple]]:
    """Run the digits example with its trial command replaced by an executable file holding `text`: the
    program and each trial's (condition, attempts, message)."""
    program = tmp_path / "trainer"
    program.write_text(text)
    program.chmod(0o755)
    template = load_yaml(DIGITS)["spec"]["trialTemplate"]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [str(program), "--architecture=${trialParameters.architecture}"]
    run_controller(tmp_path, server, max_trials=4, changes={"trialTemplate": template})
    return program, [row[1:] for row in trials(tmp_path / "run")]


def test_a_trial_program_that_cannot_be_started_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 servicer: tuple[RecordingSuggestion, str]) -> None:
    """Started without setpriv, a program the system cannot execute fails each trial with the reason, and the run
    goes on to maxFailedTrialCount."""
    monkeypatch.setattr(trial_processes, "_setpriv", lambda: None)  # as where util-linux is missing
    program, rows = trial_conditions_with_program(tmp_path, servicer[1], "neither a script nor a binary\n")
    assert rows == [("Failed", 1, f"cannot start {program}: Exec format error")] * 2


@pytest.mark.skipif(trial_processes._setpriv() is None, reason="util-linux setpriv is not installed here")
def test_a_trial_program_setpriv_cannot_execute_fails_naming_it(
        tmp_path: Path, servicer: tuple[RecordingSuggestion, str]) -> None:
    """Started through setpriv, a script whose interpreter is missing fails each trial with setpriv's reason, not
    only its exit code 127."""
    program, rows = trial_conditions_with_program(tmp_path, servicer[1], "#!/nonexistent/interpreter\n")
    assert rows == [("Failed", 1, f"cannot start {program}: No such file or directory")] * 2


@pytest.mark.skipif(trial_processes._setpriv() is None, reason="util-linux setpriv is not installed here")
def test_through_setpriv_a_file_neither_script_nor_binary_fails_as_without_it(
        tmp_path: Path, servicer: tuple[RecordingSuggestion, str]) -> None:
    """setpriv's execvp ran such a file with /bin/sh, where a container (and the runner without setpriv)
    cannot start it."""
    program, rows = trial_conditions_with_program(tmp_path, servicer[1], "neither a script nor a binary\n")
    assert rows == [("Failed", 1, f"cannot start {program}: Exec format error")] * 2


def test_live_view_shows_counts_best_and_eta() -> None:
    """The live bar and the plain lines show the counts, the best value so far and the time left."""
    best = TrialRow("t3", 3, "Succeeded", {}, {}, 1_700_000_000.0)
    summary = Summary({"Succeeded": 3, "Running": 1, "Failed": 1}, best, "0.93", False)
    stream = io.StringIO()
    view = ProgressView(6, "Validation-Accuracy", 0, stream, live=True)
    view.update(summary, "trial t1 failed")
    view.close()
    text = stream.getvalue()
    assert "trial t1 failed" in text and "4/6" in text and "running=1 failed=1 best=0.93" in text
    plain = io.StringIO()
    quiet = ProgressView(6, "acc", 1, plain, live=False)
    quiet.started -= 120  # as if the session started two minutes ago, with 3 of its trials done since then
    quiet.update(summary, "trial t2 succeeded")
    # The elapsed time depends on the machine's load; the ETA is it per trial done times the 2 trials left.
    found = re.search(r"trial t2 succeeded \[4/6 done, 1 running, 1 failed \| best acc=0\.93 \| "
                      r"elapsed (\d+):(\d\d) eta (\d+):(\d\d)\]", plain.getvalue())
    assert found, plain.getvalue()
    elapsed, eta = (int(found[1]) * 60 + int(found[2])), (int(found[3]) * 60 + int(found[4]))
    assert elapsed >= 120 and abs(eta - elapsed / 3 * 2) <= 1
    unbounded = io.StringIO()
    ProgressView(None, "acc", 0, unbounded, live=False).update(Summary({"Succeeded": 1}, None, "", False), "t4")
    assert re.search(r"t4 \[1/\? done, 0 running, 0 failed \| best - \| elapsed \d+:\d\d eta \?\]",
                     unbounded.getvalue())
