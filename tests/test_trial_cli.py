"""`katib-nas trial` as Katib runs it: a real subprocess, its real stdout parsed with Katib's regexes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from katib_nas.contract.branch_stats import parse_branch_stats, parse_skip_gates
from katib_nas.contract.codec import decode
from katib_nas.contract.metric_format import BRANCH_STATS_REGEX, NUMERIC_METRIC_REGEX
from katib_nas.trial_image.data import load_dataset, split_dataset

from .support.trial_cli import FAST, Run, katib_nas, run_trial

ARCH = "in8x8x1-cls10-stem8/w12:c3+s5+mp3@r/w16s2:mb3e3_d3:c1+id@0.1"
NUMERIC_NAMES = ["Validation-Accuracy", "Validation-Loss", "Train-Loss", "Train-Accuracy", "params", "mparams",
                 "flops", "gflops", "latency-ms"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("trial")
    run = run_trial("--architecture", ARCH, *FAST, "--epochs", "2", "--branch-stats", "--seed", "5",
                    "--metrics-file", str(out / "metrics.json"), "--metrics-format", "json",
                    "--export-dir", str(out / "export"))
    assert run.code == 0, run.stderr
    return run, out


def test_stdout_carries_every_metric_for_katibs_default_regex(full_run: tuple[Run, Path]) -> None:
    run, _ = full_run
    metrics = run.metrics()
    values = {name: float(metrics[name]) for name in NUMERIC_NAMES}
    assert 0.6 < values["Validation-Accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert values["Validation-Loss"] > 0 and values["Train-Loss"] > 0 and 0 < values["Train-Accuracy"] <= 1
    assert values["params"] > 1000 and values["flops"] > values["params"] and values["latency-ms"] > 0
    assert values["mparams"] == pytest.approx(values["params"] / 1e6, rel=1e-5)  # on an accuracy's scale
    assert values["gflops"] == pytest.approx(values["flops"] / 1e9, rel=1e-5)
    assert run.stdout.count("Train-Loss=") == 3  # two epochs, then the final block
    assert run.stdout.count("Validation-Accuracy=") == 2  # after epoch 1, then the final block (epoch 2)


def test_every_metric_line_is_dated_so_katib_keeps_one_point_per_epoch(full_run: tuple[Run, Path]) -> None:
    """Katib's StdOut collector dates a value by an RFC 3339 prefix; the UI plots the dated values in order."""
    from katib_nas.runner.metrics_collector import collect_text, rfc3339_nanos

    run, _ = full_run
    metric_lines = [line for line in run.stdout.splitlines() if "=" in line]
    stamps = [rfc3339_nanos(line.split(" ", 1)[0]) for line in metric_lines]
    assert None not in stamps and stamps == sorted(stamps)
    logs = collect_text(run.stdout, ["Validation-Accuracy", "Validation-Loss"], [])
    accuracy = [log for log in logs if log.name == "Validation-Accuracy"]
    assert len(accuracy) == 2 and accuracy[0].timestamp < accuracy[1].timestamp
    assert all(0.0 <= float(log.value) <= 1.0 for log in accuracy)


def test_branch_statistics_reach_the_experiment_through_its_metrics_format(full_run: tuple[Run, Path]) -> None:
    run, _ = full_run
    strings = run.metrics(BRANCH_STATS_REGEX)
    arch = decode(ARCH)
    stats = parse_branch_stats(strings["Branch-Stats"], arch)
    assert [len(cell) for cell in stats] == [len(cell.ops) for cell in arch.cells]
    assert all(v > 0 for v in stats[0] + stats[2]) and stats[1][0] > 0 and np.isnan(stats[1][1])
    gates = parse_skip_gates(strings["Skip-Gates"], arch)
    assert [len(g) for g in gates] == [len(cell.skips) for cell in arch.cells] == [0, 0, 2]
    assert gates[2] != (0.0, 0.0)  # learned, not the initial value
    numeric = run.metrics(NUMERIC_METRIC_REGEX)
    assert set(numeric) == set(NUMERIC_NAMES)


def test_json_metrics_file_holds_string_values(full_run: tuple[Run, Path]) -> None:
    run, out = full_run
    objects = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert len(objects) == 3 and all(isinstance(v, str) for obj in objects for v in obj.values())
    assert objects[-1]["Validation-Accuracy"] == run.metrics()["Validation-Accuracy"]
    assert objects[-1]["Branch-Stats"] == run.metrics(BRANCH_STATS_REGEX)["Branch-Stats"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_is_a_loadable_torchscript_model_with_its_metadata(full_run: tuple[Run, Path]) -> None:
    run, out = full_run
    metadata = json.loads((out / "export" / "model.json").read_text())
    assert metadata["architecture"] == ARCH
    assert metadata["metrics"]["Validation-Accuracy"] == run.metrics()["Validation-Accuracy"]
    assert metadata["input"]["shape"] == [1, 8, 8]
    model = torch.jit.load(str(out / "export" / metadata["files"]["torchscript"]))
    split = split_dataset(load_dataset("digits", None), 0.1)
    assert metadata["input"]["mean"] == pytest.approx(list(split.mean))
    with torch.no_grad():
        predictions = model(torch.from_numpy(split.val_x)).argmax(dim=1).numpy()
    accuracy = float((predictions == split.val_y).mean())
    assert accuracy == pytest.approx(float(metadata["metrics"]["Validation-Accuracy"]), abs=1e-6)


def test_quoted_architecture_and_same_seed_give_the_same_metrics(full_run: tuple[Run, Path]) -> None:
    run, _ = full_run
    again = run_trial("--architecture", f'"{ARCH}"', *FAST, "--epochs", "2", "--branch-stats", "--seed", "5")
    assert again.code == 0, again.stderr
    first, second = run.metrics(), again.metrics()
    for name in ("Validation-Accuracy", "Validation-Loss", "Train-Loss", "params", "flops", "Branch-Stats"):
        assert first[name] == second[name]
    assert run.metrics(BRANCH_STATS_REGEX) == again.metrics(BRANCH_STATS_REGEX)


def test_step_budget_text_metrics_file_and_no_push_without_a_trial_name(tmp_path: Path) -> None:
    path = tmp_path / "metrics.txt"
    env = {k: v for k, v in os.environ.items() if k != "KATIB_TRIAL_NAME"}
    run = run_trial("--architecture", "in8x8x1-cls10-stem4/w8:c3", *FAST, "--steps", "5", "--val-fraction", "0.3",
                    "--max-train-samples", "300", "--metrics-file", str(path), "--report-to-katib", env=env)
    assert run.code == 0, run.stderr
    assert path.read_text() == run.stdout
    assert "Branch-Stats" not in run.stdout
    assert "300 training and 539 validation images" in run.stderr
    assert "KATIB_TRIAL_NAME is not set" in run.stderr


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_test_flag_reports_accuracy_on_the_10000_test_images() -> None:
    run = run_trial("--architecture", "in28x28x1-cls10-stem8/w16s2:c3", "--threads", "1",
                    "--max-train-samples", "3000", "--test")
    assert run.code == 0, run.stderr
    metrics = run.metrics()
    assert 0.15 < float(metrics["Test-Accuracy"]) <= 1.0 and float(metrics["Test-Loss"]) > 0  # chance is 0.1
    assert abs(float(metrics["Test-Accuracy"]) - float(metrics["Validation-Accuracy"])) < 0.1


def test_test_flag_without_a_test_set_exits_2_before_training() -> None:
    run = run_trial("--architecture", ARCH, *FAST, "--test")
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == ["katib-nas trial: error: dataset digits has no separate test set; --test works "
                                 "with fashion-mnist (t10k files) and cifar10 (test_batch.bin)"]


def test_latency_table_measure_reports_the_predicted_latency_of_a_derived_network(tmp_path: Path) -> None:
    derived = "in8x8x1-cls10-stem8/w8:mb3e3@r:zero@r/w16s2:mb5e6@r"
    run = run_trial("--architecture", derived, *FAST, "--steps", "2", "--latency-table", "measure",
                    "--metrics-file", str(tmp_path / "m.txt"))
    assert run.code == 0, run.stderr
    metrics = run.metrics()
    assert float(metrics["predicted-latency-ms"]) > 0 and float(metrics["latency-ms"]) > 0
    assert "predicted-latency-ms=" in (tmp_path / "m.txt").read_text()


def test_a_latency_table_that_cannot_cover_the_network_exits_2_before_training() -> None:
    run = run_trial("--architecture", ARCH, *FAST, "--latency-table", "measure")
    assert run.code == 2 and "Train-Loss" not in run.stdout
    assert run.error_lines() == ["katib-nas trial: error: the latency table covers single-op and choice cells "
                                 "without skip inputs; cell c3... does not fit"]


def test_bad_architecture_text_exits_2_naming_the_token() -> None:
    run = run_trial("--architecture", "in8x8x1-cls10-stem8/w16:c3+q5", *FAST)
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == ["katib-nas trial: error: bad architecture text at position 27: token 'q5', "
                                 "expected an op such as c3, dc3, s5, s5m2, d3, mp3, ap3, mb3e6, id or zero"]


@pytest.mark.parametrize("arch, message", [
    ("in8x8x1-cls10-stem8/w8s2:c3/w8s2:c3/w8s2:c3/w8s2:c3", "stage 3: spatial size falls to 0x0"),
    ("in28x28x1-cls10-stem8/w8:c3", "architecture input 28x28x1 does not match the images of digits (8x8x1)"),
    ("in8x8x1-cls5-stem8/w8:c3", "architecture has 5 classes but digits has labels up to 9"),
    ("in8x8x1-cls9-stem8/w8:c3", "architecture has 9 classes but digits has labels up to 9"),
    ("in8x8x3-cls10-stem8/w8:c3", "architecture input 8x8x3 does not match the images of digits (8x8x1)"),
])
def test_impossible_networks_are_named_before_training(arch: str, message: str) -> None:
    run = run_trial("--architecture", arch, *FAST)
    assert run.code == 2 and run.stdout == ""
    assert len(run.error_lines()) == 1 and message in run.error_lines()[0]


def test_missing_data_exits_2_naming_the_path_and_the_package(tmp_path: Path) -> None:
    run = run_trial("--architecture", "in28x28x1-cls10-stem8/w8:c3", "--data-dir", str(tmp_path))
    assert run.code == 2 and run.stdout == ""
    [line] = run.error_lines()
    assert f"{tmp_path}/train-images-idx3-ubyte.gz not found" in line and "dataset-fashion-mnist" in line


def test_divergence_exits_3_without_reporting_the_objective() -> None:
    run = run_trial("--architecture", ARCH, *FAST, "--steps", "40", "--lr", "1e6")
    assert run.code == 3
    assert "Validation-Accuracy" not in run.stdout and "Validation-Loss" not in run.stdout
    [line] = run.error_lines()
    assert line.startswith("katib-nas trial: error: training diverged: the loss became NaN or infinite")


def test_a_failed_push_exits_1_at_the_first_report_it_could_not_deliver() -> None:
    """Every report is pushed (each epoch's too): an unreachable DB manager ends the trial at the first one, after
    that report was printed, rather than after training whose metrics could not reach Katib."""
    env = {**os.environ, "KATIB_TRIAL_NAME": "trial-1", "KATIB_DB_MANAGER_ADDRESS": "127.0.0.1:1"}
    failed = run_trial("--architecture", "in8x8x1-cls10-stem4/w8:c3", *FAST, "--steps", "3", "--report-to-katib",
                       env=env)
    assert failed.code == 1 and "Train-Loss=" in failed.stdout and "Validation-Accuracy=" not in failed.stdout
    [line] = failed.error_lines()
    assert line.startswith("katib-nas trial: error: cannot push metrics to Katib at 127.0.0.1:1")


def test_help_lists_the_documented_flags() -> None:
    completed = subprocess.run(katib_nas() + ["trial", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    for flag in ("--architecture", "--dataset", "--data-dir", "--epochs", "--steps", "--batch-size", "--lr",
                 "--weight-decay", "--seed", "--device", "--threads", "--val-fraction", "--max-train-samples",
                 "--branch-stats", "--test", "--metrics-file", "--metrics-format", "--report-to-katib", "--tfevent-dir",
                 "--export-dir"):
        assert flag in completed.stdout


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="the onnx package is not installed")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_onnx_export_computes_what_the_torchscript_export_computes(full_run: tuple[Run, Path]) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    _, out = full_run
    metadata = json.loads((out / "export" / "model.json").read_text())
    graph = onnx.load(str(out / "export" / metadata["files"]["onnx"]))
    onnx.checker.check_model(graph)
    images = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    [logits] = ReferenceEvaluator(graph).run(None, {"images": images})
    scripted = torch.jit.load(str(out / "export" / metadata["files"]["torchscript"]))
    with torch.no_grad():
        expected = scripted(torch.from_numpy(images)).numpy()
    assert logits.shape == (3, 10) and np.allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1", "--steps", "3"], "argument --steps: not allowed with argument --epochs"),
    (["--lr", "-1"], "argument --lr: -1 must be a positive finite number"),
    (["--val-fraction", "1"], "argument --val-fraction: 1 must lie strictly between 0 and 1"),
    (["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    run = run_trial("--architecture", "in8x8x1-cls10-stem4/w8:c3", *args)
    assert run.code == 2 and run.stdout == ""
    [line] = run.error_lines()
    assert message in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_bad_input() -> None:
    run = run_trial("--architecture", "in8x8x1-cls10-stem4/w8:c3", *FAST, "--device", "cuda")
    assert run.code == 2 and run.error_lines() == [
        "katib-nas trial: error: --device cuda was asked for, but no CUDA device is available "
        "(use --device auto or cpu)"]


@pytest.mark.parametrize("epochs", [1, 2])  # the final evaluation; an epoch's report before the last
def test_an_infinite_validation_loss_is_a_divergence_not_a_nan_for_katib(epochs: int, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`Validation-Loss=nan` would reach Katib as an empty value (its default regex matches no digits)."""
    import io

    from katib_nas.trial_image import trainer
    from katib_nas.trial_image.trial import TrialOptions
    from katib_nas.trial_image.trial import run_trial as run_in_process

    monkeypatch.setattr(trainer, "evaluate_trained", lambda model, tensors, parallel=None: (float("inf"), 0.5))
    stdout = io.StringIO()
    options = TrialOptions(architecture=ARCH, dataset="digits", epochs=epochs, threads=1, max_train_samples=200,
                           batch_size=64)
    assert run_in_process(options, stdout) == 3
    assert "Validation-" not in stdout.getvalue()
    assert "training diverged: the validation loss after epoch 1 is inf" in capsys.readouterr().err


@pytest.mark.parametrize("text, kept", [('"abc"', "abc"), ('""', ""), ('"abc', '"abc'), ('abc"', 'abc"'),
                                        ('"', '"'), ("abc", "abc")])
def test_only_a_pair_of_surrounding_quotes_is_removed(text: str, kept: str) -> None:
    from katib_nas.trial_image.inputs import split_seed, strip_quotes

    assert strip_quotes(text) == kept
    assert split_seed(None) == () and split_seed(7) == (7,)  # no --split-seed keeps the data module's split


@pytest.mark.parametrize("images, labels, arch, advice", [
    ((30, 3, 8, 8), np.arange(30) % 10, "in8x8x3-cls10-stem8/w8:c3",
     "npz (3x8x8); the images look channels-first (N, C, H, W) = (N, 3, 8, 8): the data is read as (N, H, W, C), "
     "so save x.transpose(0, 2, 3, 1)"),
    ((30, 8, 8), np.arange(30) % 10 + 1, "in8x8x1-cls10-stem8/w8:c3",
     "npz has labels up to 10 (labels are class indices 0..K-1); change the 'cls' part of the architecture text "
     "(in an Experiment: graphConfig's outputSizes [11]) or number the labels from 0 (they start at 1)"),
    ((30, 8, 8), np.arange(30) % 10, "in8x8x1-cls5-stem8/w8:c3",
     "npz has labels up to 9 (labels are class indices 0..K-1); change the 'cls' part of the architecture text "
     "(in an Experiment: graphConfig's outputSizes [10])"),
])
def test_data_that_does_not_fit_the_network_gets_the_fix_for_its_cause(tmp_path: Path, images: tuple[int, ...],
                                                                       labels: np.ndarray, arch: str,
                                                                       advice: str) -> None:
    """Channels-first images, labels 1..10 and a network of too few classes: the line names the cause and the
    fix in the Experiment too (numbering the labels from 0 only where they start above it).
    Before, channels-first images were only a shape mismatch to be fixed in the architecture text, which would
    have trained on them as 3 rows of 8 pixels with 8 channels."""
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.random.default_rng(0).uniform(0, 1, images), y=labels)
    run = run_trial("--architecture", arch, "--dataset=npz", f"--data-dir={path}", "--threads=1")
    assert run.code == 2 and run.stdout == ""
    assert len(run.error_lines()) == 1 and run.error_lines()[0].endswith(advice), run.error_lines()
