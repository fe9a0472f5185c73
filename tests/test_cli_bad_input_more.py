"""Bad input every subcommand must refuse with exit 2 and one line naming the value and its flag or field.

Values at the edge of what Python, torch or the host accept: counts past a C int, rates past float32, seeds past
64 bits, thread counts that would crash OpenMP, goals and search settings that are not finite numbers, resource
quantities Kubeflow Pipelines refuses, an output that is a folder, a workdir that is a file, a host that does
not resolve.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path

import pytest
import yaml

from katib_nas.cli.main import main

from .conftest import oneshot_digits_experiment
from .support.local_runner import katib_nas, one_line, stub_experiment
from .support.trial_cli import FAST, run_trial

ARCH = "in8x8x1-cls10-stem4/w8:c3"
SUPERNET = "in8x8x1-cls10-stem8/w8:mb3e3_mb5e6_c3_zero@r/w16s2:mb3e3_mb5e6_c3_zero@r"


def refused(result, command: str) -> str:  # noqa: ANN001 - a CompletedProcess
    """The one error line of a run refused as bad input."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"katib-nas {command}: error: "), line
    return line


@pytest.mark.parametrize("flag, value, bounds", [
    ("--max-trials", str(10**20), "[1, 2147483647]"),
    ("--max-trials", "0", "[1, 2147483647]"),
    ("--parallel", "-2", "[1, 2147483647]"),
    ("--max-failed", "-1", "[0, 2147483647]"),
])
def test_run_budget_flags_are_checked_as_flags(tmp_path: Path, flag: str, value: str, bounds: str) -> None:
    result = katib_nas("run", stub_experiment(tmp_path), "--workdir", tmp_path / "run", f"{flag}={value}")
    assert refused(result, "run").endswith(f"argument {flag}: {value} must be a whole number in {bounds} "
                                           "(see katib-nas run --help)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("goal", [float("nan"), float("inf"), float("-inf")])
def test_a_goal_that_is_not_a_finite_number_is_refused(tmp_path: Path, goal: float) -> None:
    path = stub_experiment(tmp_path)
    document = yaml.safe_load(path.read_text())
    document["spec"]["objective"]["goal"] = goal
    path.write_text(yaml.safe_dump(document))
    result = katib_nas("run", path, "--workdir", tmp_path / "run")
    assert refused(result, "run").endswith(f"spec.objective.goal must be a finite number, got {goal!r}")
    assert not (tmp_path / "run").exists()


def test_demo_in_a_workdir_that_is_a_file_is_one_line_and_keeps_the_file(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.write_text("mine\n")
    result = katib_nas("demo", "--workdir", mine)
    assert refused(result, "demo") == f"katib-nas demo: error: cannot use {mine} as the workdir: File exists"
    assert mine.read_text() == "mine\n"


@pytest.mark.parametrize("flag, value", [("--lr", "1e39"), ("--weight-decay", "1e300")])
def test_rates_beyond_what_training_can_hold_are_refused(flag: str, value: str) -> None:
    run = run_trial("--architecture", ARCH, *FAST, "--steps", "1", flag, value)
    assert run.code == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.error_lines() == [f"katib-nas trial: error: argument {flag}: {value} must be a number of at most "
                                 "3.40282e+38, the largest a float32 holds (see katib-nas trial --help)"]


def test_proxyless_search_lr_is_held_to_the_same_bound() -> None:
    result = katib_nas("proxyless-search", f"--architecture={SUPERNET}", "--search=epochs-1_warmup-0",
                       "--dataset=digits", "--lr", "1e39")
    assert "argument --lr: 1e39 must be a number of at most 3.40282e+38" in refused(result, "proxyless-search")


@pytest.mark.parametrize("search, message", [
    ("epochs-1_warmup-0_target-nan", "search settings: target=nan must be a finite number"),
    ("epochs-1_warmup-0_archlr-nan", "search settings: archlr=nan must be a finite number"),
    ("epochs-1_warmup-0_beta-inf", "search settings: beta=inf must be a finite number"),
    ("epochs-1_warmup-0_seed-99999999999999999999",
     "search settings: seed=99999999999999999999 must be at most 4294967295"),
    ("epochs-10000000_warmup-0", "search settings: epochs=10000000 must be at most 1000000"),
    ("epochs-1_warmup-0_retrain-10000000", "search settings: retrain=10000000 must be at most 1000000"),
    ("epochs-1_warmup-0_epochs-2", "search settings: epochs is given twice"),
])
def test_search_settings_out_of_range_are_refused_before_training(search: str, message: str) -> None:
    result = katib_nas("proxyless-search", f"--architecture={SUPERNET}", f"--search={search}", "--dataset=digits",
                       "--max-train-samples=32", "--threads=1")
    assert refused(result, "proxyless-search") == f"katib-nas proxyless-search: error: {message}"
    assert result.stdout == ""


def test_profile_threads_are_bounded_as_the_trials_are(tmp_path: Path) -> None:
    result = katib_nas("profile", oneshot_digits_experiment(tmp_path / "experiment.yaml"), "--out",
                       tmp_path / "t.json", "--threads", "99999999")
    assert refused(result, "profile").endswith("argument --threads: 99999999 must be a whole number in [1, 1024] "
                                               "(see katib-nas profile --help)")
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("flags, message", [
    (("--cpu", "lots"), "--cpu 'lots' is not a CPU quantity"),
    (("--memory=-8Gi",), "--memory '-8Gi' is not a memory quantity"),
])
def test_compile_resources_are_checked_before_compiling(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    output = tmp_path / "p.yaml"
    result = katib_nas("pipeline", "compile", "--output", output, *flags)
    assert message in refused(result, "pipeline")
    assert not output.exists()


@pytest.mark.parametrize("name", ["folder", "pipeline.txt"])
def test_compile_output_must_be_a_yaml_file(tmp_path: Path, name: str) -> None:
    output = tmp_path / name
    if name == "folder":
        output.mkdir()
    result = katib_nas("pipeline", "compile", "--output", output)
    assert refused(result, "pipeline") == (f"katib-nas pipeline: error: --output {output} must name a .yaml file "
                                           "for the pipeline")


@pytest.mark.parametrize("argument, message", [
    ("max_trials=abc", "max_trials must be a whole number of at least 0 (0: the example's own), not 'abc'"),
    ("max_trials=-1", "max_trials must be a whole number of at least 0 (0: the example's own), not -1"),
    ("parallel_trials=-2", "parallel_trials must be a whole number of at least 0 (0: the example's own), not -2"),
])
def test_pipeline_run_budget_arguments_are_named(tmp_path: Path, argument: str, message: str) -> None:
    result = katib_nas("pipeline", "run", "--arg", argument, "--pipeline-root", tmp_path / "root")
    assert refused(result, "pipeline") == f"katib-nas pipeline: error: {message}"
    assert not (tmp_path / "root").exists()


def test_too_few_training_images_name_the_images_not_the_processes() -> None:
    run = run_trial("--architecture", ARCH, *FAST, "--steps", "1", "--max-train-samples", "1")
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == ["katib-nas trial: error: only 1 training images here, fewer than the 2 a batch "
                                 "needs (2 for each of 1 processes): give the trial more images "
                                 "(--max-train-samples, --val-fraction)"]


def test_serve_on_a_host_that_does_not_resolve_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The resolver's answer is played (no lookup leaves the machine); the server is never started."""
    asked: list[str] = []

    def no_such_host(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    monkeypatch.setattr("katib_nas.suggestion.service.server.serve", lambda *args: pytest.fail("served"))
    assert main(["serve", "--host", "no-such-host.invalid", "--port", "0"]) == 2
    assert asked == ["no-such-host.invalid"]
    assert one_line(capsys.readouterr().err) == ("katib-nas serve: error: --host 'no-such-host.invalid' does not "
                                                 "resolve to an address: Name or service not known")


def test_a_finite_goal_still_runs(tmp_path: Path) -> None:
    """The goal check refuses only what is not a finite number."""
    path = stub_experiment(tmp_path, max_trials=1, parallel=1, max_failed=None)
    document = copy.deepcopy(yaml.safe_load(path.read_text()))
    document["spec"]["objective"]["goal"] = 0.5
    path.write_text(yaml.safe_dump(document))
    result = katib_nas("run", path, "--workdir", tmp_path / "run", "--no-report")
    assert result.returncode == 0, result.stderr
