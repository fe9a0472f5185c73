"""The Kubeflow pipeline: committed YAML matches a fresh compile, bad parameters fail before a run,
and the whole pipeline runs end to end with kfp.local's SubprocessRunner on digits."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from katib_nas.cli.pipeline import parse_arguments
from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.deploy.images import TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE
from katib_nas.pipelines import steps
from katib_nas.pipelines.pipeline import COMPILED, check_arguments, compile_pipeline, final_defaults, submit
from katib_nas.pipelines.search_request import (
    SearchRequest,
    apply_request,
    experiment_name,
    load_example,
    split_trial_args,
)
from katib_nas.pipelines.steps import FinalTraining, train_final
from katib_nas.trial_image.data import FASHION_MNIST_DIR

from .conftest import REPO, load_yaml, oneshot_digits_experiment


def katib_nas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", *args], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_committed_pipeline_yaml_is_what_compiling_gives(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == COMPILED.read_text(), "recompile: katib-nas pipeline compile --output " \
                                                      "pipelines/nas_pipeline.yaml"


def test_compiled_pipeline_carries_the_example_and_wires_the_three_steps() -> None:
    compiled = yaml.safe_load(COMPILED.read_text())
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"nas-search", "train-final", "export-model"}
    assert tasks["train-final"]["dependentTasks"] == ["nas-search"]
    assert tasks["export-model"]["dependentTasks"] == ["nas-search", "train-final"]
    carried = tasks["nas-search"]["inputs"]["parameters"]["experiment_yaml"]["runtimeValue"]["constant"]
    assert yaml.safe_load(carried) == load_example("nas-random-fashion-mnist")
    images = {e["container"]["image"] for e in compiled["deploymentSpec"]["executors"].values()}
    assert images == {TRIAL_CPU_IMAGE}  # the example's trial image


def test_steps_install_nothing_when_they_start() -> None:
    """kfp and katib_nas are in the image: no `pip install` before a step's code runs."""
    compiled = yaml.safe_load(COMPILED.read_text())
    for executor in compiled["deploymentSpec"]["executors"].values():
        command = " ".join(executor["container"]["command"] + executor["container"].get("args", []))
        assert "pip install" not in command and "python3 -m kfp.dsl.executor_main" in command


def test_run_parameters_default_to_the_pods_namespace_and_keeping_the_experiment() -> None:
    parameters = yaml.safe_load(COMPILED.read_text())["root"]["inputDefinitions"]["parameters"]
    assert parameters["namespace"]["defaultValue"] == ""
    assert parameters["keep_experiment"] == {"defaultValue": True, "isOptional": True, "parameterType": "BOOLEAN"}
    check_arguments({"namespace": ""})
    check_arguments({"namespace": "team-a", "keep_experiment": True})


def executor(compiled: dict[str, Any], step: str) -> dict[str, Any]:
    return compiled["deploymentSpec"]["executors"][f"exec-{step}"]["container"]


def test_gpu_example_trains_on_the_gpu_in_the_cuda_image_with_its_data_volume(tmp_path: Path) -> None:
    """envelopenet-cifar10-gpu: trials read /data/cifar-10-batches-bin from PVC cifar10-data, with one GPU."""
    compiled, platform = yaml.safe_load_all(compiled_path(tmp_path, "--example", "envelopenet-cifar10-gpu"))
    final = executor(compiled, "train-final")
    assert final["image"] == TRIAL_CUDA_IMAGE and executor(compiled, "nas-search")["image"] == TRIAL_CUDA_IMAGE
    assert final["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert final["resources"]["accelerator"]["resourceCount"] == "1"
    assert final["resources"]["resourceMemoryLimit"] == "8Gi"
    assert "resources" not in executor(compiled, "nas-search")  # it waits for Katib: no GPU held
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("nas-search", "train-final"):
        assert [(m["constant"], m["mountPath"]) for m in mounts[f"exec-{step}"]["pvcMount"]] == \
            [("cifar10-data", "/data")]
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    assert defaults["data_dir"]["defaultValue"] == "/data/cifar-10-batches-bin"


def compiled_path(tmp_path: Path, *flags: str) -> str:
    done = katib_nas("pipeline", "compile", "--output", str(tmp_path / "p.yaml"), *flags)
    assert done.returncode == 0, done.stderr
    return (tmp_path / "p.yaml").read_text()


def test_compile_flags_override_the_examples_resources_and_volumes(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all(compiled_path(
        tmp_path, "--example", "envelopenet-cifar10-gpu", "--cpu", "4", "--memory", "16Gi", "--accelerator",
        "none", "--data-pvc", "datasets:/mnt/data", "--image", "registry.example.com/nas/trial-cuda:1.0")))
    final = executor(documents[0], "train-final")
    assert final["image"] == "registry.example.com/nas/trial-cuda:1.0"
    assert final["resources"]["resourceCpuLimit"] == "4" and final["resources"]["resourceMemoryLimit"] == "16Gi"
    assert "accelerator" not in final["resources"]
    mounts = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-final"]["pvcMount"]
    assert [(m["constant"], m["mountPath"]) for m in mounts] == [("datasets", "/mnt/data")]


def test_a_trial_pod_without_containers_is_one_line() -> None:
    from katib_nas.pipelines.search_request import override_container_args

    document = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")
    del document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    with pytest.raises(InvalidInput, match="the pipeline takes an Experiment whose trial is a Job with a pod "
                                           "template; this one's trial is a Job"):
        override_container_args(document, ("--epochs=2",))


@pytest.mark.parametrize("flags, message", [
    (("--accelerator", "gpu"), "--accelerator 'gpu' must be RESOURCE=COUNT"),
    (("--data-pvc", "data"), "--data-pvc 'data' must be CLAIM:/absolute/path"),
    (("--example", "nas-random-fashion-mnist-trainjob"), "this one's trial is a TrainJob: use its Job counterpart"),
    (("--example", "nas-random-fashion-mnist-pytorchjob"), "this one's trial is a PyTorchJob: use its Job counterpart"),
])
def test_bad_compile_flags_are_one_line(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    done = katib_nas("pipeline", "compile", "--output", str(tmp_path / "p.yaml"), *flags)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_submit_runs_under_kfps_default_account_unless_told() -> None:
    from kfp import Client

    class RecordingClient:
        """Records each call as kfp.Client's own method would take its arguments (a misspelled one is refused)."""

        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def create_run_from_pipeline_func(self, *args: Any, **kwargs: Any) -> str:
            self.calls.append(inspect.signature(Client.create_run_from_pipeline_func).bind(self, *args, **kwargs)
                              .arguments)
            return "run"

    client = RecordingClient()
    submit(client, {"max_trials": 4})
    submit(client, {"max_trials": 4}, service_account="nas-runner")
    assert [call["service_account"] for call in client.calls] == [None, "nas-runner"]


@pytest.mark.parametrize("arguments, message", [
    ({"algorithm": "enas"}, "unknown algorithm 'enas'; available: envelopenet, nas-random, proxylessnas"),
    ({"backend": "minikube"}, "unknown backend 'minikube'"),
    ({"trial_args": "--epochs 3"}, "trial argument '3' must look like --flag=value"),
    ({"trial_args": "--data-dir=/data/${trialSpec.Name}"}, "trial argument '--data-dir=/data/${trialSpec.Name}': a "
                                                            "value may hold only letters, digits and"),
    ({"trial_args": "--lr=0.1;reboot"}, "(Katib runs the trial's command through sh)"),
    ({"max_trials": 2, "parallel_trials": 5}, "spec.parallelTrialCount"),
    ({"namespace": "Kube_Flow"}, "not a valid Kubernetes namespace"),
    ({"namespace": "a" * 64}, "not a valid Kubernetes namespace"),
    ({"max_trail": 3}, "unknown pipeline parameter 'max_trail'"),
    ({"dataset": "digits"}, "final_test needs a dataset with a separate test set (fashion-mnist, cifar10); "
                            "dataset digits has none: pass final_test=false"),
    ({"final_test": "yes"}, "final_test must be true or false, not 'yes'"),
])
def test_bad_run_arguments_are_refused_before_the_run(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_arguments(arguments)
    assert message in str(info.value)


def test_final_test_defaults_to_whether_the_dataset_has_a_test_set(tmp_path: Path) -> None:
    assert final_defaults(load_example("nas-random-fashion-mnist")).test is True
    assert final_defaults(load_example(str(digits_example(tmp_path / "digits.yaml")))).test is False
    check_arguments({"dataset": "digits", "final_test": False})
    assert parse_arguments(["final_test=False", "max_trials=3", "dataset=digits"]) == {
        "final_test": False, "max_trials": 3, "dataset": "digits"}


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_final_training_with_test_reports_and_exports_test_metrics(tmp_path: Path) -> None:
    config = FinalTraining(epochs=1, max_train_samples=256, test=True, batch_size=64, threads=1)
    metrics = train_final("in28x28x1-cls10-stem8/w8:c3/w16s2:c3", config, tmp_path / "model")
    assert 0.0 <= float(metrics["Test-Accuracy"]) <= 1.0 and float(metrics["Test-Loss"]) > 0.0
    exported = json.loads((tmp_path / "model" / "model.json").read_text())["metrics"]
    assert exported["Test-Accuracy"] == metrics["Test-Accuracy"]


def test_cli_reports_a_missing_example_and_an_unknown_algorithm_in_one_line(tmp_path: Path) -> None:
    missing = katib_nas("pipeline", "compile", "--example", "cifar100", "--output", str(tmp_path / "p.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "katib-nas pipeline: error: no file 'cifar100' and no example of that name; examples: "
        + ", ".join(sorted(p.stem for p in (REPO / "examples").glob("*.yaml")))]
    assert not (tmp_path / "p.yaml").exists()
    unknown = katib_nas("pipeline", "run", "--arg", "algorithm=darts", "--pipeline-root", str(tmp_path))
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1 and "unknown algorithm 'darts'" in unknown.stderr


def test_request_overrides_budget_algorithm_and_trial_args() -> None:
    document = load_example("nas-random-fashion-mnist")
    result = apply_request(document, SearchRequest(max_trials=2, trial_args=split_trial_args(
        "--dataset=digits --epochs=3 --val-fraction=0.2")))
    assert (result["spec"]["maxTrialCount"], result["spec"]["parallelTrialCount"]) == (2, 2)
    command = result["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command.count("--epochs=3") == 1 and "--epochs=1" not in command
    assert "--dataset=digits" in command and "--dataset=fashion-mnist" not in command
    assert command[-1] == "--val-fraction=0.2"
    assert document["spec"]["maxTrialCount"] == 12  # the example itself is untouched


def test_experiment_names_fit_katib_and_differ_per_run() -> None:
    document = {"metadata": {"name": "a-rather-long-experiment-name-for-fashion-mnist"}}
    names = {experiment_name(document, f"run-{i}") for i in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 40 and name[0].isalpha() and name[-1].isalnum() and name == name.lower()


def test_local_one_shot_search_returns_the_derived_network_not_the_supernet(tmp_path: Path) -> None:
    document = load_yaml(oneshot_digits_experiment(tmp_path / "oneshot.yaml"))
    settings = {s["name"]: s for s in document["spec"]["algorithm"]["algorithmSettings"]}
    settings["epochs"]["value"], settings["warmup_epochs"]["value"] = "2", "1"
    request = SearchRequest(max_trials=1, trial_args=("--dataset=digits", "--max-train-samples=1600",
                                                      "--batch-size=64", "--threads=1"))
    result = steps.search_local(document, request, tmp_path / "search")
    assert not any(cell.choice for cell in decode(result.architecture).cells)
    assert result.architecture == result.metrics["Best-Architecture"]


def digits_example(path: Path) -> Path:
    """The nas-random example, retargeted to 8x8 digits (what the pipeline would run for a small dataset)."""
    document = load_example("nas-random-fashion-mnist")
    document["metadata"]["name"] = "nas-random-digits"
    document["spec"]["nasConfig"]["graphConfig"].update(inputSizes=[8, 8, 1], numLayers=3)
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    kept = [a for a in container["command"] if not a.startswith(("--dataset", "--max-train-samples"))]
    container["command"] = kept + ["--dataset=digits"]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_whole_pipeline_runs_locally_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`katib-nas pipeline run` ends with the trained network's files, named as the user finds them."""
    import onnx
    import torch
    from sklearn.datasets import load_digits

    from katib_nas.cli.main import main

    example = digits_example(tmp_path / "nas-random-digits.yaml")
    root = tmp_path / "root"
    (root / "an-earlier-run").mkdir(parents=True)
    assert main(["pipeline", "run", "--example", str(example), "--pipeline-root", str(root), "--arg", "max_trials=2",
                 "--arg", "parallel_trials=1", "--arg", "trial_args=--threads=1 --batch-size=64",
                 "--arg", "final_epochs=3", "--arg", "threads=1"]) == 0
    (run_root,) = set(root.iterdir()) - {root / "an-earlier-run"}  # a folder of its own: runs side by side
    (run_dir,) = run_root.iterdir()
    printed = capsys.readouterr().out
    assert f"TorchScript model: {run_dir / 'export-model' / 'torchscript'}\n" in printed
    assert f"ONNX model:        {run_dir / 'export-model' / 'onnx_model'}\n" in printed
    assert f"{run_dir / 'train-final' / 'model' / 'model.json'}\n" in printed
    search = json.loads((run_dir / "nas-search" / "executor_output.json").read_text())
    architecture = search["parameterValues"]["architecture"]
    assert decode(architecture).input_shape == (8, 8, 1)
    model_info = json.loads((run_dir / "train-final" / "model" / "model.json").read_text())
    assert model_info["architecture"] == architecture

    scripted = torch.jit.load(str(run_dir / "export-model" / "torchscript")).eval()
    digits = load_digits()
    given = model_info["input"]  # the digits file's pixels are 0..16
    assert given["scale"] == pytest.approx(1 / 16)
    images = (digits.images.astype(np.float32) * given["scale"] - given["mean"][0]) / given["std"][0]
    with torch.no_grad():
        predicted = scripted(torch.from_numpy(images[:, None])).argmax(1).numpy()
    assert (predicted == digits.target).mean() > 0.5  # ten classes: chance is 0.1

    onnx.checker.check_model(onnx.load(str(run_dir / "export-model" / "onnx_model")))
    markdown = (run_dir / "export-model" / "visualization").read_text()
    assert architecture in markdown and "| Validation-Accuracy |" in markdown
    assert f"normalise pixels as {given['normalise']} with scale {given['scale']}, mean {given['mean']}" in markdown
    assert "<svg" in (run_dir / "export-model" / "diagram").read_text()
    assert architecture in (run_dir / "nas-search" / "report").read_text()


def test_a_local_search_that_did_not_succeed_fails_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`katib-nas run` reports the best trial so far also for a Failed Experiment; it was trained as the winner."""
    def failed_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        report = Path(argv[argv.index("--workdir") + 1]) / "report"
        report.mkdir(parents=True)
        (report / "best_architecture.json").write_text(json.dumps({
            "trial": "t-1", "metrics": {"Validation-Accuracy": "0.5"},
            "architecture": {"text": "in28x28x1-cls10-stem8/w8:c3"}}))
        return subprocess.CompletedProcess(argv, 1)

    monkeypatch.setattr(steps.subprocess, "run", failed_run)
    with pytest.raises(steps.StepFailed, match=r"the local search ended with exit 1, not Succeeded"):
        steps.search_local(load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml"), SearchRequest(),
                           tmp_path / "work")


def test_another_algorithm_drops_the_examples_settings_and_overrides_reach_args() -> None:
    """The example's own algorithmSettings belong to its algorithm (envelopenet's final_epochs would be an
    unknown setting to nas-random); a trial container written with `args` gets the override there."""
    searched = apply_request(load_example("envelopenet-fashion-mnist"), SearchRequest(algorithm="nas-random"))
    assert "algorithmSettings" not in searched["spec"]["algorithm"]
    document = load_example("nas-random-fashion-mnist")
    [container] = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    container["command"], container["args"] = container["command"][:1], container["command"][1:]
    changed = apply_request(document, SearchRequest(trial_args=("--epochs=2",)))
    [container] = changed["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    assert "--epochs=2" in container["args"] and "--epochs=1" not in container["args"] + container["command"]


def test_final_nodes_are_bounded() -> None:
    with pytest.raises(InvalidInput, match=r"final_nodes must be a whole number in \[1, 1024\], not 1025"):
        check_arguments({"final_backend": "trainjob", "final_nodes": 1025})
