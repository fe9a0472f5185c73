"""Experiment YAML loading, Katib's defaults and checks, template rendering and request building."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeflow.katib import katib_api_pb2

from katib_nas.proto import api_pb2
from katib_nas.runner import katib_messages
from katib_nas.runner.manifest import (
    ExperimentError,
    MedianStop,
    check_runs_locally,
    experiment_from_document,
    parse_experiment,
)
from katib_nas.runner.metrics_collector import MetricSummary
from katib_nas.runner.status import outcome, summarize_trials, trials_to_request
from katib_nas.runner.store import TrialRow
from katib_nas.runner.trial_template import ExperimentError as TemplateError
from katib_nas.runner.trial_template import (
    apply_overrides,
    build_command,
    container_argv,
    render_trial_spec,
    resolve_program,
)
from katib_nas.suggestion.service import convert

from .conftest import KATIB_FIXTURES, REPO, load_yaml, schema_errors

DIGITS = REPO / "tests" / "data" / "nas-random-digits.yaml"
ARCH = "in8x8x1-cls10-stem8/w16:c3:s3@0"


@pytest.fixture
def document() -> dict[str, Any]:
    return load_yaml(DIGITS)


def container(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def test_test_experiment_matches_katib_schema(document: dict[str, Any], katib_schemas: dict[str, Any]) -> None:
    assert schema_errors(katib_schemas["experiment"], document) == []
    assert schema_errors(katib_schemas["job"], document["spec"]["trialTemplate"]["trialSpec"]) == []


def test_defaults_follow_katib(document: dict[str, Any]) -> None:
    del document["spec"]["parallelTrialCount"]
    spec = experiment_from_document(document)
    assert spec.parallel_trial_count == 3
    assert spec.collector.kind == "StdOut" and spec.collector.format == "TEXT"
    assert spec.objective.strategy("Validation-Accuracy") == "max"
    assert spec.objective.strategy("Validation-Loss") == "max"  # additional metrics follow the objective type
    document["spec"]["objective"]["metricStrategies"] = [{"name": "Validation-Loss", "value": "min"}]
    assert experiment_from_document(document).objective.strategy("Validation-Loss") == "min"


def test_katib_shaped_experiments_load() -> None:
    paths = sorted(KATIB_FIXTURES.glob("*-experiment.yaml"))
    assert [path.name for path in paths] == ["darts-experiment.yaml", "enas-experiment.yaml"]
    for path in paths:
        spec = parse_experiment(path.read_text(), str(path))
        assert spec.nas_config and spec.template.parameters


@pytest.mark.parametrize("text, message", [
    ("kind: Job\napiVersion: batch/v1\n", "is not a Katib Experiment: found apiVersion 'batch/v1' and kind 'Job'"),
    ("", "is not a Katib Experiment: the file is empty"),
    ("- a\n- b\n", "is not a Katib Experiment"),
    ("a: [1, 2\n", "is not valid YAML"),
])
def test_not_an_experiment(text: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(text, "x.yaml")


def mutate(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return changed


@pytest.mark.parametrize("path, value, message", [
    ("spec.nasConfig", None, "spec.nasConfig is missing"),
    ("metadata.name", "Bad_Name", "metadata.name 'Bad_Name' must be lower case"),
    ("spec.maxTrialCount", "4", "spec.maxTrialCount must be an integer"),
    ("spec.parallelTrialCount", 5, "spec.parallelTrialCount=5 must be at most spec.maxTrialCount=4"),
    ("spec.maxFailedTrialCount", -1, "must not be less than 0"),
    ("spec.objective.type", "maximise", "must be minimize or maximize"),
    ("spec.algorithm", None, "spec.algorithm must be specified"),
    ("spec.earlyStopping", {"algorithmName": "hyperband"}, "'hyperband' is not an early stopping algorithm"),
    ("spec.earlyStopping", {"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "0"}]},
     "start_step must be at least 1, got 0"),
    ("spec.earlyStopping", {"algorithmName": "medianstop",
                            "algorithmSettings": [{"name": "min_trials_required", "value": "two"}]},
     "min_trials_required must be a whole number"),
    ("spec.earlyStopping", {"algorithmName": "medianstop", "algorithmSettings": [{"name": "window", "value": "3"}]},
     "unknown setting 'window' for medianstop"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "StdOut"}, "source": {"filter": {"metricsFormat": ["(x"]}}},
     "not a valid regular expression"),
    ("spec.metricsCollectorSpec", {"source": {"filter": {"metricsFormat": ["x=(\\d+)"]}}}, "needs two groups"),
    ("spec.metricsCollectorSpec", {"source": {"filter": {"metricsFormat": ["(?:x)=(?:\\d+)"]}}},
     "has 0 capturing groups"),
    ("spec.trialTemplate.trialParameters", [{"name": "other", "reference": "architecture"}],
     "'other' is not used in spec.trialTemplate.trialSpec"),
    ("spec.trialTemplate.trialParameters", [{"name": "architecture", "reference": "architecture"},
                                            {"name": "a2", "reference": "architecture"}],
     "reference 'architecture' is duplicated"),
    ("spec.maxTrialCount", 2**31, "does not fit in int32"),
    ("spec.maxTrialCount", 0, "spec.maxTrialCount=0 must be greater than 0"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "File"}, "source": {
        "fileSystemPath": {"path": "/var/log/katib/", "kind": "File"}}}, "must name a file"),
    ("spec.metricsCollectorSpec", {"collector": {}}, r"collector.kind is required when .*\.collector is given"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "TensorFlowEvent"}, "source": {
        "fileSystemPath": {"path": "/tmp/events", "kind": "File"}}}, "needs kind Directory and an absolute path"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "TensorFlowEvent"}, "source": {
        "fileSystemPath": {"path": "events"}}}, "needs kind Directory and an absolute path"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "TensorFlowEvent"}, "source": {
        "fileSystemPath": {"path": "/tmp/events", "format": "TEXT"}}}, "format must be empty for TensorFlowEvent"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "PrometheusMetric"}, "source": {"httpGet": {"port": "http"}}},
     "port 'http' must be a positive integer"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "PrometheusMetric"}, "source": {"httpGet": {"path": "m"}}},
     "path 'm' must start with '/'"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "Custom"}}, "customCollector is required for kind Custom"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "Custom", "customCollector": {"name": "c"}},
                                   "source": {"fileSystemPath": {"path": "rel", "kind": "File"}}},
     "needs kind File or Directory and an absolute path"),
    ("spec.trialTemplate.trialSpec.kind", "Workflow",
     "successCondition and .failureCondition are required for a trialSpec of kind 'Workflow'"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "File"}, "source": {
        "fileSystemPath": {"path": "/var/log/katib/m.json", "kind": "File", "format": "JSON"},
        "filter": {"metricsFormat": ["([\\w-]+)=([\\d.]+)"]}}}, "filter must be omitted"),
])
def test_bad_fields_are_named(document: dict[str, Any], path: str, value: Any, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        experiment_from_document(mutate(document, path, value))


@pytest.mark.parametrize("collector", [
    {"collector": {"kind": "TensorFlowEvent"}},
    {"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"path": "/tmp/tb", "kind": "Directory"}}},
    {"collector": {"kind": "PrometheusMetric"}},
    {"collector": {"kind": "PrometheusMetric"}, "source": {"httpGet": {"port": 0, "path": "/m"}}},
    {"collector": {"kind": "Custom", "customCollector": {"name": "c", "image": "c"}}},
    {},
])
def test_collectors_katib_admits_are_admitted(document: dict[str, Any], collector: dict[str, Any]) -> None:
    """After Katib's defaults (a Directory for event files, port 8080 and /metrics, StdOut for no collector)."""
    spec = experiment_from_document(mutate(document, "spec.metricsCollectorSpec", collector))
    assert spec.collector.kind == (collector.get("collector") or {}).get("kind", "StdOut")


def test_a_push_collector_is_katibs_but_not_the_local_runners(document: dict[str, Any]) -> None:
    spec = experiment_from_document(mutate(document, "spec.metricsCollectorSpec", {"collector": {"kind": "Push"}}))
    assert spec.collector.kind == "Push"  # a pipeline may still send it to Katib
    with pytest.raises(ExperimentError, match="kind Push cannot run locally"):
        check_runs_locally(spec)


def test_feasible_space_values_must_be_strings(document: dict[str, Any]) -> None:
    document["spec"]["nasConfig"]["operations"][0]["parameters"][0]["feasibleSpace"]["list"] = [1, 3]
    with pytest.raises(ExperimentError, match=r"list\[0\] must be a string, got int 1 \(quote it"):
        experiment_from_document(document)


def test_budget_overrides_are_checked(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)
    assert spec.with_budget(max_trials=10, parallel=1).max_trial_count == 10
    with pytest.raises(ExperimentError, match="lower it with --max-failed"):
        spec.with_budget(max_trials=1)
    with pytest.raises(ExperimentError, match="lower it with --parallel"):
        spec.with_budget(max_trials=1, max_failed=1)


def test_a_lower_max_trials_lowers_the_counts_left_as_they_are(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)  # parallelTrialCount 2, maxFailedTrialCount 2
    fitted, notes = spec.fitted_budget(max_trials=1)
    assert (fitted.max_trial_count, fitted.parallel_trial_count, fitted.max_failed_trial_count) == (1, 1, 1)
    assert notes == ("spec.parallelTrialCount lowered from 2 to 1, the maximum number of trials",
                     "spec.maxFailedTrialCount lowered from 2 to 1, the maximum number of trials")
    assert spec.fitted_budget(max_trials=3)[1] == ()
    with pytest.raises(ExperimentError, match="lower it with --parallel"):  # an explicit value is kept, and refused
        spec.fitted_budget(max_trials=1, parallel=2)


def test_medianstop_defaults_and_settings_are_katibs(document: dict[str, Any]) -> None:
    document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    assert experiment_from_document(document).early_stopping == MedianStop(min_trials_required=3, start_step=4)
    document["spec"]["earlyStopping"]["algorithmSettings"] = [{"name": "min_trials_required", "value": "2"},
                                                              {"name": "start_step", "value": "1"}]
    assert experiment_from_document(document).early_stopping == MedianStop(min_trials_required=2, start_step=1)


def test_render_substitutes_plain_text_and_meta(document: dict[str, Any]) -> None:
    container(document)["env"] = [{"name": "TRIAL", "value": "${trialParameters.trial}"}]
    document["spec"]["trialTemplate"]["trialParameters"].append({"name": "trial", "reference": "${trialSpec.Name}"})
    spec = experiment_from_document(document)
    rendered = render_trial_spec(spec.template, "t-1", "ns", {"architecture": ARCH})
    out = rendered["spec"]["template"]["spec"]["containers"][0]
    assert f'--architecture="{ARCH}"' in out["command"] and out["env"][0]["value"] == "t-1"
    # Katib's sh -c wrapper strips the quotes; so does the local split.
    assert container_argv(out, "training-container")[2] == f"--architecture={ARCH}"


def test_render_reads_trial_labels_annotations_and_any_parameter_name(document: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    """${trialSpec.Labels[KEY]} and ${trialSpec.Annotations[KEY]} read the trialSpec's own metadata, as Katib's do;
    a trialParameter's name may be any text without braces."""
    document["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"labels": {"team": "vision"},
                                                                  "annotations": {"owner": "ana"}}
    container(document)["env"] = [{"name": name.upper(), "value": "${trialParameters.%s}" % name}
                                  for name in ("team", "owner", "größe")]
    document["spec"]["trialTemplate"]["trialParameters"] += [
        {"name": "team", "reference": "${trialSpec.Labels[team]}"},
        {"name": "owner", "reference": "${trialSpec.Annotations[owner]}"},
        {"name": "größe", "reference": "${trialSpec.Kind}"}]
    env = build_command(experiment_from_document(document), "t-1", {"architecture": ARCH}, (), tmp_path / "t-1").env
    assert (env["TEAM"], env["OWNER"], env["GRÖSSE"]) == ("vision", "ana", "Job")


def test_an_assigned_value_that_breaks_the_template_is_named(document: dict[str, Any], tmp_path: Path) -> None:
    spec = experiment_from_document(document)
    with pytest.raises(TemplateError, match="trial t-1: an assigned value breaks the trial template"):
        build_command(spec, "t-1", {"architecture": 'x" "y'}, (), tmp_path / "t-1")


def test_unreferenced_and_missing_assignments(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)
    with pytest.raises(TemplateError, match=r"assigned \['extra'\] but no .*trialParameters entry references it"):
        render_trial_spec(spec.template, "t", "ns", {"architecture": ARCH, "extra": "1"})
    with pytest.raises(TemplateError, match="references 'architecture', but the suggestion assigned only"):
        render_trial_spec(spec.template, "t", "ns", {"other": "1"})


@pytest.mark.parametrize("command, message", [
    (["python3", "train.py", "|", "tee", "log"], "shell syntax '|'"),
    (["python3", "train.py", "--x=$HOME"], "shell syntax"),
    (["sh", "-c", "python3 train.py"], "runs a shell script"),
    ([], "has no command"),
])
def test_commands_that_need_a_shell_or_an_image_are_refused(command: list[str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        container_argv({"command": command}, "c")


def test_program_resolution(tmp_path: Path) -> None:
    assert resolve_program(["katib-nas", "trial"])[:3] == [sys.executable, "-m", "katib_nas.cli"]
    assert resolve_program(["python3", "-V"]) == [sys.executable, "-V"]
    assert resolve_program(["true"], search_path="/usr/bin:/bin")[0].endswith("/true")
    with pytest.raises(TemplateError, match="trial command 'no-such-program-x' not found on PATH"):
        resolve_program(["no-such-program-x"], search_path=str(tmp_path))
    unexecutable = tmp_path / "trainer"
    unexecutable.write_text("#!/bin/sh\n")
    unexecutable.chmod(0o644)
    with pytest.raises(TemplateError, match=f"trial command '{unexecutable}' not found or not executable"):
        resolve_program([str(unexecutable), "--epochs=1"])


def test_trial_arg_overrides() -> None:
    argv = ["katib-nas", "trial", "--dataset=fashion-mnist", "--epochs", "3"]
    assert apply_overrides(argv, ["--dataset=digits", "--epochs=1", "--seed=2"]) == [
        "katib-nas", "trial", "--dataset=digits", "--epochs=1", "--seed=2"]


def test_trial_arg_placeholders_are_rendered_per_trial(document: dict[str, Any], tmp_path: Path) -> None:
    container(document)["env"] = [{"name": "TRIAL", "value": "${trialParameters.trial}"}]
    document["spec"]["trialTemplate"]["trialParameters"].append({"name": "trial", "reference": "${trialSpec.Name}"})
    spec = experiment_from_document(document)
    overrides = ["--export-dir=model/${trialSpec.Name}", "--tag=${trialParameters.trial}-${trialSpec.Namespace}",
                 "--arch=${trialParameters.architecture}"]
    for name in ("t-1", "t-2"):
        argv = build_command(spec, name, {"architecture": ARCH}, overrides, tmp_path / name).argv
        assert argv[-3:] == (f"--export-dir=model/{name}", f"--tag={name}-{spec.namespace}", f"--arch={ARCH}")
        # Katib's metrics collectors and the Push collector's report_metrics read the trial's name from here
        assert build_command(spec, name, {"architecture": ARCH}, overrides, tmp_path / name
                             ).env["KATIB_TRIAL_NAME"] == name


@pytest.mark.parametrize("override, message", [
    ("--x=${trialParameters.nope}", "--trial-arg '--x=${trialParameters.nope}' uses ${trialParameters.nope}, but "
                                    "spec.trialTemplate.trialParameters has no entry named 'nope'"),
    ("--x=${trialSpec.Labels[none]}", "--trial-arg '--x=${trialSpec.Labels[none]}': illegal reference of trial "
                                      "metadata: ${trialSpec.Labels[none]}"),
])
def test_unknown_trial_arg_placeholders_are_refused(document: dict[str, Any], tmp_path: Path, override: str,
                                                    message: str) -> None:
    spec = experiment_from_document(document)
    with pytest.raises(TemplateError) as refused:
        build_command(spec, "t-1", {"architecture": ARCH}, [override], tmp_path / "t-1")
    assert str(refused.value) == message


def test_file_collector_path_gets_a_file_per_trial(document: dict[str, Any], tmp_path: Path) -> None:
    container(document)["command"].append("--metrics-file=/var/log/katib/m.log")
    document["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "File"}, "source": {
        "fileSystemPath": {"path": "/var/log/katib/m.log", "kind": "File", "format": "TEXT"}}}
    spec = experiment_from_document(document)
    command = build_command(spec, "t-1", {"architecture": ARCH}, (), tmp_path / "t-1")
    assert command.metrics_file == str(tmp_path / "t-1" / "metrics" / "var/log/katib/m.log")
    assert f"--metrics-file={command.metrics_file}" in command.argv


def trial(name: str, condition: str, assignments: dict[str, str] | None = None, **metrics: str) -> TrialRow:
    observation = {key.replace("_", "-"): MetricSummary(key.replace("_", "-"), value, value, value)
                   for key, value in metrics.items()}
    return TrialRow(name, 0, condition, assignments or {"architecture": ARCH}, {}, 1_700_000_000.0,
                    observation=observation)


def test_experiment_message_matches_what_the_service_reads(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)
    message = katib_messages.experiment_message(api_pb2, spec, [("seed", "9"), ("state", "abc")])
    info = convert.experiment_info(message)
    assert info.name == "nas-random-digits" and info.algorithm == "nas-random" and info.maximize
    assert info.settings == {"seed": "9", "stem_width": "8", "default_width": "16", "state": "abc"}
    assert info.additional_metrics == ("Validation-Loss", "latency-ms", "params")
    assert info.parallel_trial_count == 2 and info.max_trial_count == 4 and info.goal is None
    space = document["spec"]["nasConfig"]
    assert info.nas_config["graphConfig"] == space["graphConfig"]
    assert [op["operationType"] for op in info.nas_config["operations"]] == \
        [op["operationType"] for op in space["operations"]]
    parameter = message.spec.nas_config.operations.operation[0].parameter_specs.parameters[0]
    assert parameter.parameter_type == api_pb2.CATEGORICAL and list(parameter.feasible_space.list) == ["1", "3"]


def test_a_minimize_objective_is_sent_as_katibs_minimize(document: dict[str, Any]) -> None:
    """A minimize spec's objective type is MINIMIZE in our stubs and, over the wire, in Katib's own."""
    document["spec"]["objective"]["type"] = "minimize"
    spec = experiment_from_document(document)
    message = katib_messages.experiment_message(api_pb2, spec)
    assert message.spec.objective.type == api_pb2.MINIMIZE
    katibs = katib_api_pb2.Experiment.FromString(message.SerializeToString())
    assert katib_api_pb2.ObjectiveType.Name(katibs.spec.objective.type) == "MINIMIZE"
    assert not convert.experiment_info(message).maximize


def test_trials_as_katib_sends_them(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)
    trials = [trial("a", "Succeeded", Validation_Accuracy="0.9"), trial("b", "MetricsUnavailable"),
              trial("c", "Running"), trial("d", "Failed"), trial("e", "EarlyStopped"),
              trial("f", "EarlyStopped", Validation_Accuracy="0.7"),
              trial("g", "EarlyStopped", Validation_Accuracy="unavailable"), trial("h", "EarlyStopped", Loss="0.3")]
    trials[0].labels["proxylessnas-index"] = "0"  # on the Trial's metadata: Katib never sends it back
    request = katib_messages.suggestions_request(api_pb2, spec, [], trials, 2)
    assert [t.name for t in request.trials] == ["a", "c", "d", "f"]  # stopped early, objective unseen: left out
    assert request.current_request_number == 2 and request.total_request_number == 10
    assert [dict(t.spec.labels) for t in request.trials] == [{}] * 4
    first = request.trials[0]
    assert first.status.condition == api_pb2.TrialStatus.SUCCEEDED
    assert [(m.name, m.value) for m in first.status.observation.metrics] == [("Validation-Accuracy", "0.9")]
    assert first.spec.parameter_assignments.assignments[0].value == ARCH
    assert request.trials[1].status.condition == api_pb2.TrialStatus.RUNNING
    assert request.trials[1].status.completion_time == ""


def test_settings_merge_overwrites_in_place_and_appends() -> None:
    assert katib_messages.merge_settings([("a", "1"), ("b", "2")], [("b", "3"), ("c", "4")]) == [
        ("a", "1"), ("b", "3"), ("c", "4")]


def test_completion_rules(document: dict[str, Any]) -> None:
    document["spec"]["objective"]["goal"] = 0.95
    spec = experiment_from_document(document)
    running = [trial("a", "Succeeded", Validation_Accuracy="0.9"), trial("b", "Running")]
    summary = summarize_trials(running, spec.objective)
    assert outcome(summary, spec) is None and trials_to_request(summary, spec) == 1
    goal = summarize_trials(running + [trial("c", "Succeeded", Validation_Accuracy="0.96")], spec.objective)
    assert outcome(goal, spec).reason == "ExperimentGoalReached" and goal.best.name == "c"
    failed = summarize_trials([trial("a", "Failed"), trial("b", "MetricsUnavailable")], spec.objective)
    assert outcome(failed, spec).condition == "Failed"
    done = summarize_trials([trial(n, "Succeeded", Validation_Accuracy="0.5") for n in "abcd"], spec.objective)
    assert outcome(done, spec).reason == "ExperimentMaxTrialsReached"
    three = summarize_trials([trial(n, "Succeeded", Validation_Accuracy="0.5") for n in "abc"], spec.objective)
    assert trials_to_request(three, spec) == 1  # never past maxTrialCount


def test_a_maximized_goal_is_reached_at_it_and_the_first_of_equal_trials_stays_best(document: dict[str, Any]
                                                                                    ) -> None:
    document["spec"]["objective"]["goal"] = 0.95
    spec = experiment_from_document(document)
    tied = summarize_trials([trial("a", "Succeeded", Validation_Accuracy="0.9"),
                             trial("b", "Succeeded", Validation_Accuracy="0.9")], spec.objective)
    assert tied.best.name == "a" and outcome(tied, spec) is None
    at_goal = summarize_trials([trial("c", "Succeeded", Validation_Accuracy="0.95")], spec.objective)
    assert outcome(at_goal, spec).reason == "ExperimentGoalReached"


def test_created_trials_count_against_the_parallel_limit(document: dict[str, Any]) -> None:
    """A trial created (or requeued on resume) but not yet started holds a parallel slot, as in Katib."""
    spec = experiment_from_document(document)
    assert spec.parallel_trial_count == 2
    assert trials_to_request(summarize_trials([trial("a", "Created")], spec.objective), spec) == 1
    assert trials_to_request(summarize_trials([trial("a", "Created"), trial("b", "Running")], spec.objective),
                             spec) == 0


def test_no_failure_allowed_fails_the_run_at_the_first_not_before(document: dict[str, Any]) -> None:
    document["spec"]["maxFailedTrialCount"] = 0
    spec = experiment_from_document(document)
    assert outcome(summarize_trials([], spec.objective), spec) is None
    assert outcome(summarize_trials([trial("a", "Failed")], spec.objective), spec).condition == "Failed"


def test_completion_rules_when_minimizing(document: dict[str, Any]) -> None:
    """Minimizing, the lowest value is the best and the goal is reached at or below it."""
    document["spec"]["objective"].update(type="minimize", goal=0.1)
    spec = experiment_from_document(document)
    above = [trial("a", "Succeeded", Validation_Accuracy="0.3"), trial("b", "Succeeded", Validation_Accuracy="0.2"),
             trial("c", "Succeeded", Validation_Accuracy="0.25")]
    summary = summarize_trials(above, spec.objective)
    assert summary.best.name == "b" and summary.best_value == "0.2" and outcome(summary, spec) is None
    at_goal = summarize_trials(above + [trial("d", "Succeeded", Validation_Accuracy="0.1")], spec.objective)
    assert at_goal.best.name == "d" and outcome(at_goal, spec).reason == "ExperimentGoalReached"


def test_string_objective_best_is_the_latest(document: dict[str, Any]) -> None:
    spec = experiment_from_document(document)
    trials = [trial("a", "Succeeded", Validation_Accuracy="0.9"), trial("b", "Succeeded",
                                                                        Validation_Accuracy="Genotype")]
    assert summarize_trials(trials, spec.objective).best.name == "b"


def test_yaml_round_trip_of_the_test_experiment(document: dict[str, Any]) -> None:
    assert parse_experiment(yaml.safe_dump(document)).name == "nas-random-digits"
