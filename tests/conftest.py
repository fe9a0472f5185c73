"""Shared fixtures: paths to the repository, Katib-shaped fixtures the tests own, Katib's Experiment schema."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings as hypothesis_settings

from .katib_schema import load_schemas

#: `make test` (and so CI) selects this profile: every run tries the same examples, so a red run is red again when
#: repeated, and no example database carries state from one run to the next. Plain `pytest` explores at random.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)

#: The shared helpers in tests/support/ explain a failed assert as the test modules do (pytest rewrites only
#: test modules and conftest files by itself).
pytest.register_assert_rewrite("tests.support")

REPO = Path(__file__).resolve().parents[1]
#: Experiments shaped like Katib's ENAS and DARTS examples, and katib-config of each v0.19.0 install variant.
KATIB_FIXTURES = REPO / "tests" / "data" / "katib"


def load_yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def repo() -> Path:
    return REPO


#: Epochs of each trial of `digits_run`.
DIGITS_RUN_EPOCHS = 2


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workdir of a finished local run: three nas-random trials of two epochs on digits (`katib-nas run`)."""
    workdir = tmp_path_factory.mktemp("digits") / "run"
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(REPO / "tests/data/nas-random-digits.yaml"),
                           "--workdir", str(workdir), "--max-trials", "3", "--parallel", "2",
                           f"--trial-arg=--epochs={DIGITS_RUN_EPOCHS}", "--trial-arg=--threads=1",
                           "--trial-arg=--max-train-samples=400"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def katib_schemas() -> dict[str, Any]:
    """Strict JSON schemas of Katib's Experiment and of a batch/v1 Job, from kubeflow-katib's models."""
    return load_schemas()


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def trial_pod_templates(trial_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod templates of a trial spec by where they sit: a Job's one, each PyTorchJob replica's; a TrainJob
    has none (its pods come from the training runtime)."""
    kind, spec = trial_spec["kind"], trial_spec["spec"]
    if kind == "Job":
        return {"spec.template": spec["template"]}
    if kind == "PyTorchJob":
        return {f"spec.pytorchReplicaSpecs.{name}.template": replica["template"]
                for name, replica in spec["pytorchReplicaSpecs"].items()}
    assert kind == "TrainJob", kind
    return {}


def runtime_pod_templates(runtime: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod templates of a Kubeflow Trainer training runtime by where they sit, one per replicated job."""
    return {f"spec.template.spec.replicatedJobs.{job['name']}.template.spec.template": job["template"]["spec"]["template"]
            for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]}


def trial_containers(trial_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container the trial spec describes; a TrainJob's trainer as a container (image, command, args,
    resources per node)."""
    if trial_spec["kind"] == "TrainJob":
        trainer = trial_spec["spec"]["trainer"]
        return [{"name": "node", "image": trainer["image"], "command": trainer.get("command") or [],
                 "args": trainer.get("args") or [], "resources": trainer.get("resourcesPerNode") or {}}]
    return [c for pod in trial_pod_templates(trial_spec).values() for c in pod["spec"]["containers"]]


def dockerfile_steps(path: Path) -> tuple[list[str], str, list[str]]:
    """(paths copied into the image, the project's pip install target, the entrypoint) as a Dockerfile states them."""
    text = path.read_text()
    copies = [name for line in text.splitlines() if line.startswith("COPY ") for name in line.split()[1:-1]]
    target = re.search(r'^RUN pip install (?:--[\w-]+ (?:\S+ )?)*"(\.[^"]*)"', text, re.M).group(1)
    entrypoint = re.search(r"^ENTRYPOINT \[(.*)\]", text, re.M).group(1)
    return copies, target, [part.strip().strip('"') for part in entrypoint.split(",")]


def build_context(dockerfile: Path, destination: Path) -> tuple[Path, str, list[str]]:
    """A copy of what the Dockerfile copies from the repository; with its pip target and entrypoint."""
    copies, target, entrypoint = dockerfile_steps(dockerfile)
    destination.mkdir(parents=True)
    for name in copies:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, destination / name)
    return destination, target, entrypoint


def oneshot_digits_experiment(path: Path) -> Path:
    """The proxylessnas one-shot CPU example retargeted to 8x8 digits, with a small supernet:
    in8x8x1-cls10-stem8/w8:mb3e3_mb5e6_c3_zero@r/w16s2:mb3e3_mb5e6_c3_zero@r:mb3e3_mb5e6_c3_zero@r."""
    document = load_yaml(REPO / "examples" / "proxylessnas-oneshot-fashion-mnist.yaml")
    spec = document["spec"]
    spec["nasConfig"]["graphConfig"].update(numLayers=3, inputSizes=[8, 8, 1])
    spec["nasConfig"]["operations"] = [
        {"operationType": "mbconv", "parameters": [
            {"name": "kernel_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}},
            {"name": "expand_ratio", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]},
        {"operationType": "mbconv", "parameters": [
            {"name": "kernel_size", "parameterType": "categorical", "feasibleSpace": {"list": ["5"]}},
            {"name": "expand_ratio", "parameterType": "categorical", "feasibleSpace": {"list": ["6"]}}]},
        {"operationType": "convolution", "parameters": [
            {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]},
        {"operationType": "zero"}]
    settings = {s["name"]: s for s in spec["algorithm"]["algorithmSettings"]}
    settings["stem_width"]["value"] = "8"
    settings["stage_widths"]["value"] = "8,16"
    settings["stage_strides"]["value"] = "1,2"
    path.write_text(yaml.safe_dump(document))
    return path
