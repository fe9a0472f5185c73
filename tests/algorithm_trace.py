"""Recorded conversations between Katib and the suggestion service, one per example Experiment.

A trace is what Katib's controller would send for an example and what the service answered: rounds of
GetSuggestions whose trial history grows from the earlier answers (their assignments and the trial names
they ask for, the algorithm settings the replies asked Katib to store), with trials that succeed with metrics a real trial
reports (derived from the assignment, so always the same), fail, or are still running. The contract test
(test_algorithm_contract.py) replays the recorded requests and expects the recorded replies: a change that
alters what any algorithm proposes for any of them shows up there. Messages are kubeflow-katib's own.

Record them again (after a change that is meant to alter proposals) with
    .venv/bin/python -m tests.algorithm_trace
which starts `katib-nas serve` of the installed code and rewrites tests/data/traces/.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any, Callable

from google.protobuf import json_format
from kubeflow.katib import katib_api_pb2 as pb

from katib_nas.contract.branch_stats import format_branch_stats, format_skip_gates
from katib_nas.contract.codec import decode, encode
from katib_nas.contract.supernet import derive
from katib_nas.runner.katib_messages import experiment_message
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms.base import NAME_TOKEN_ALPHABET, NAME_TOKEN_LENGTH

from .conftest import REPO, load_yaml

TRACES = REPO / "tests" / "data" / "traces"
EXAMPLES = REPO / "examples"
#: Trials asked for in each round (the first round asks for parallelTrialCount).
COUNTS = (0, 1, 3, 2, 1, 2)
Ask = Callable[[Any], Any]


def examples() -> list[str]:
    """Every example Experiment (name without .yaml)."""
    return sorted(path.stem for path in EXAMPLES.glob("*.yaml"))


def example_experiment(name: str) -> Any:
    return experiment_message(pb, experiment_from_document(load_yaml(EXAMPLES / f"{name}.yaml")))


def _fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def metrics(assignments: dict[str, str], names: list[str]) -> dict[str, str]:
    """What a trial with these assignments reports: every metric the Experiment collects."""
    key = json.dumps(assignments, sort_keys=True)
    arch = decode(assignments["architecture"])
    values: dict[str, str] = {}
    for name in names:
        share = _fraction(key, name)
        if name == "Branch-Stats":
            values[name] = format_branch_stats([[round(0.1 + _fraction(key, name, str(c), str(o)), 4)
                                                 for o, _ in enumerate(cell.ops)] for c, cell in enumerate(arch.cells)])
        elif name == "Skip-Gates":
            values[name] = format_skip_gates([[round(_fraction(key, name, str(c), str(s)) - 0.5, 4)
                                               for s, _ in enumerate(cell.skips)] for c, cell in enumerate(arch.cells)])
        elif name == "Best-Architecture":
            values[name] = encode(derive(arch, [int(share * 7) % len(cell.ops) for cell in arch.cells]))
        elif name == "Validation-Accuracy":
            values[name] = f"{0.5 + 0.45 * share:.4f}"
        else:
            values[name] = f"{0.2 + 3 * share:.4f}"
    return values


def conversation(name: str, ask: Ask) -> list[tuple[Any, Any]]:
    """(request, reply) of every round for the example `name`, each request built from the earlier replies."""
    experiment = example_experiment(name)
    objective = experiment.spec.objective
    names = [objective.objective_metric_name] + list(objective.additional_metric_names)
    trials: list[Any] = []
    proposed = 0
    steps = []
    for round_index, count in enumerate(COUNTS):
        count = count or max(experiment.spec.parallel_trial_count, 1)
        request = pb.GetSuggestionsRequest(experiment=experiment, trials=trials, current_request_number=count,
                                           total_request_number=proposed + count)
        reply = ask(request)
        steps.append((request, reply))
        for setting in reply.algorithm.algorithm_settings:
            _store(experiment, setting.name, setting.value)
        for trial in trials:  # last round's running trials finish
            if trial.status.condition == pb.TrialStatus.RUNNING:
                _finish(trial, names)
        for entry in reply.parameter_assignments:  # Katib names a trial as asked, or at random
            trials.append(_trial(entry.trial_name or f"{name}-{proposed}", proposed, entry, names))
            proposed += 1
    return steps


def _store(experiment: Any, name: str, value: str) -> None:
    """Katib merges a reply's algorithm settings into the Experiment's: replaced in place or appended."""
    for setting in experiment.spec.algorithm.algorithm_settings:
        if setting.name == name:
            setting.value = value
            return
    experiment.spec.algorithm.algorithm_settings.add(name=name, value=value)


def _trial(name: str, index: int, entry: Any, names: list[str]) -> Any:
    """The trial as Katib sends it: the reply's labels are on the Trial's metadata, never in a request."""
    trial = pb.Trial(name=name)
    trial.spec.parameter_assignments.assignments.extend(entry.assignments)
    if index % 7 == 3:
        trial.status.condition = pb.TrialStatus.FAILED
    elif index % 5 == 4:
        trial.status.condition = pb.TrialStatus.RUNNING
    else:
        _finish(trial, names)
    return trial


def _finish(trial: Any, names: list[str]) -> None:
    trial.status.condition = pb.TrialStatus.SUCCEEDED
    assignments = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
    for metric, value in metrics(assignments, names).items():
        trial.status.observation.metrics.add(name=metric, value=value)


def without_name_tokens(reply: Any) -> Any:
    """The reply with the random part of every trial name it asks for taken off (checked to be one), so that
    replies compare by what the algorithm decided."""
    bare = pb.GetSuggestionsReply()
    bare.CopyFrom(reply)
    for entry in bare.parameter_assignments:
        if entry.trial_name:
            stem, _, token = entry.trial_name.rpartition("-")
            assert len(token) == NAME_TOKEN_LENGTH and set(token) <= set(NAME_TOKEN_ALPHABET), entry.trial_name
            entry.trial_name = stem
    return bare


def to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def load(name: str) -> list[tuple[Any, Any]]:
    """The recorded (request, reply) pairs of the example `name`."""
    steps = json.loads((TRACES / f"{name}.json").read_text())["steps"]
    return [(json_format.ParseDict(s["request"], pb.GetSuggestionsRequest()),
             json_format.ParseDict(s["reply"], pb.GetSuggestionsReply())) for s in steps]


def record() -> None:
    """Rewrite every trace from a `katib-nas serve` of the installed code."""
    from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

    from .serve_process import start_serve

    server = start_serve()
    try:
        stub = pb_grpc.SuggestionStub(server.channel)
        TRACES.mkdir(parents=True, exist_ok=True)
        for name in examples():
            steps = conversation(name, lambda request: stub.GetSuggestions(request, timeout=60))
            lines = [json.dumps({"request": to_json(q), "reply": to_json(r)}, sort_keys=True, separators=(",", ":"))
                     for q, r in steps]
            (TRACES / f"{name}.json").write_text('{"example": "%s", "steps": [\n%s\n]}\n' % (name, ",\n".join(lines)))
            print(f"{name}: {len(steps)} rounds", file=sys.stderr)
    finally:
        server.stop()


if __name__ == "__main__":
    record()
