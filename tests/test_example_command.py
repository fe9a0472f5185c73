"""`katib-nas example` (every example for another registry and namespace, valid as the examples are), the prepare
Jobs the GPU examples need (latency-table ConfigMap, CIFAR-10 claim) and the TrainJob example's training runtime,
`katib-nas fetch-cifar10`, `katib-nas profile --configmap` on the Kubernetes API emulator, and the examples
inside the built wheel."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kubeflow_trainer_api.models import TrainerV1alpha1TrainingRuntime

from katib_nas.cli.main import build_parser
from katib_nas.deploy import examples
from katib_nas.deploy.images import image
from katib_nas.pipelines.search_request import check_experiment
from katib_nas.runner.trial_template import TRAINJOB_CONTAINER
from katib_nas.trial_image.data import load_cifar10
from katib_nas.trial_image.fetch_cifar10 import FILES, FOLDER

from .conftest import REPO, oneshot_digits_experiment, runtime_pod_templates, schema_errors, trial_pod_templates
from .katib_schema import build, strict_pydantic
from .kube_emulator import start_cluster
from .support.katib_webhook import webhook_errors
from .support.pod_security import restricted_violations

REGISTRY, NAMESPACE = "registry.example.com:5000/team/nas", "team-a"
TARGET = examples.Target(REGISTRY, NAMESPACE, "1.2.3")
EXPERIMENTS = sorted(name for name in examples.catalogue() if not name.startswith("prepare/"))
PREPARE = sorted(name for name in examples.catalogue() if name.startswith("prepare/"))
PREPARE_JOBS = ["prepare/cifar10-data", "prepare/latency-table-cuda"]
MODELS = {"Job": "V1Job", "ServiceAccount": "V1ServiceAccount", "Role": "V1Role", "RoleBinding": "V1RoleBinding",
          "PersistentVolumeClaim": "V1PersistentVolumeClaim"}


def katib_nas(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


def rendered(name: str) -> list[dict[str, Any]]:
    done = katib_nas("example", name, "--registry", REGISTRY, "--namespace", NAMESPACE, "--version", "1.2.3")
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def images_in(document: Any) -> list[str]:
    text = json.dumps(document)
    return [part.split('"')[0] for part in text.split('"image": "')[1:]]


def test_every_example_and_prepare_job_is_listed() -> None:
    done = katib_nas("example", "--list")
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert listed == list(examples.catalogue())
    assert {p.stem for p in (REPO / "examples").glob("*.yaml")} == set(EXPERIMENTS)
    assert PREPARE == [*PREPARE_JOBS, "prepare/trainjob-runtime"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_example_for_another_registry_and_namespace_is_valid_as_the_examples_are(
        name: str, katib_schemas: dict[str, Any]) -> None:
    [document] = rendered(name)
    assert document["metadata"]["namespace"] == NAMESPACE
    assert images_in(document) and all(i.startswith(f"{REGISTRY}/trial-") and i.endswith(":1.2.3")
                                       for i in images_in(document))
    assert schema_errors(katib_schemas["experiment"], document) == []
    assert webhook_errors(document) == []
    check_experiment(document)  # Katib's webhook rules and the algorithm's own, with the new namespace
    for where, pod in trial_pod_templates(document["spec"]["trialTemplate"]["trialSpec"]).items():
        assert restricted_violations(pod) == [], where
    original = examples.find(name).read_text()
    assert [line for line in original.splitlines() if line.startswith("#")] == \
        [line for line in examples.render(examples.find(name), TARGET).splitlines() if line.startswith("#")]


@pytest.mark.parametrize("name", PREPARE_JOBS)
def test_prepare_jobs_are_valid_restricted_and_run_katib_nas(name: str) -> None:
    documents = rendered(name)
    for document in documents:
        schema = build(MODELS[document["kind"]])
        assert schema_errors(schema, document) == [], document["kind"]
        assert document["metadata"]["namespace"] == NAMESPACE
    [job] = [d for d in documents if d["kind"] == "Job"]
    pod = job["spec"]["template"]
    assert restricted_violations(pod) == []
    [container] = pod["spec"]["containers"]
    assert container["image"].startswith(f"{REGISTRY}/trial-")
    assert container["command"][0] == "katib-nas"
    build_parser().parse_args(container["command"][1:])  # a subcommand and flags the image's katib-nas takes
    bindings = [d for d in documents if d["kind"] == "RoleBinding"]
    assert len(bindings) == (1 if "serviceAccountName" in pod["spec"] else 0)  # the Job's account gets its Role
    for binding in bindings:
        assert [s["namespace"] for s in binding["subjects"]] == [NAMESPACE]
        assert binding["subjects"][0]["name"] == pod["spec"]["serviceAccountName"]


def test_trainjob_runtime_is_valid_restricted_and_the_one_the_trainjob_example_names(
        katib_schemas: dict[str, Any]) -> None:
    """Trainer's strict schema of a TrainingRuntime; its pods restricted, without Istio's sidecar, /tmp on an
    emptyDir; the `node` replicated job and container Trainer's torch plugin fills with the TrainJob's trainer,
    marked as the trainer step; in the namespace of the example, which names it."""
    [runtime] = rendered("prepare/trainjob-runtime")
    assert schema_errors(strict_pydantic(TrainerV1alpha1TrainingRuntime), runtime) == []
    assert runtime["metadata"]["namespace"] == NAMESPACE and "torch" in runtime["spec"]["mlPolicy"]
    [(where, pod)] = runtime_pod_templates(runtime).items()
    assert where.endswith(f"replicatedJobs.{TRAINJOB_CONTAINER}.template.spec.template")
    [job] = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    assert restricted_violations(pod) == [] and pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    [container] = pod["spec"]["containers"]
    assert container["name"] == TRAINJOB_CONTAINER and images_in(runtime) == [f"{REGISTRY}/trial-cpu:1.2.3"]
    scratch = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
    assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch} == {"/tmp"}
    [experiment] = rendered("nas-random-fashion-mnist-trainjob")
    assert experiment["metadata"]["namespace"] == NAMESPACE
    assert experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["runtimeRef"] == {
        "name": runtime["metadata"]["name"], "kind": "TrainingRuntime"}
    assert experiment["spec"]["trialTemplate"]["primaryContainerName"] == TRAINJOB_CONTAINER


def mounted(example: str, kind: str) -> set[str]:
    pod = yaml.safe_load(examples.find(example).read_text())["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]
    return {v[kind].get("claimName") or v[kind].get("name") for v in pod["spec"]["volumes"] if kind in v}


def test_prepare_jobs_make_what_the_gpu_examples_mount() -> None:
    cifar = rendered("prepare/cifar10-data")
    assert mounted("envelopenet-cifar10-gpu", "persistentVolumeClaim") == {
        d["metadata"]["name"] for d in cifar if d["kind"] == "PersistentVolumeClaim"}
    [job] = [d for d in cifar if d["kind"] == "Job"]
    dest = build_parser().parse_args(job["spec"]["template"]["spec"]["containers"][0]["command"][1:]).dest
    experiment = yaml.safe_load(examples.find("envelopenet-cifar10-gpu").read_text())
    command = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--data-dir={dest}/{FOLDER}" in command

    [profile_job] = [d for d in rendered("prepare/latency-table-cuda") if d["kind"] == "Job"]
    args = build_parser().parse_args(profile_job["spec"]["template"]["spec"]["containers"][0]["command"][1:])
    assert {args.configmap} == mounted(args.experiment, "configMap")
    trial = yaml.safe_load(examples.find(args.experiment).read_text())
    command = trial["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--latency-table=/etc/katib-nas/latency/{Path(args.out).name}" in command
    assert args.device == "cuda"


@pytest.mark.parametrize("args, message", [
    (("example", "nas-random-cifar100"), "no example named 'nas-random-cifar100'; examples: envelopenet-cifar10-gpu"),
    (("example", "nas-random-fashion-mnist", "--registry", "https://registry.example.com"), "is not a registry"),
    (("example", "nas-random-fashion-mnist", "--namespace", "Team_A"), "is not a Kubernetes namespace"),
    (("example",), "name an example, or pass --list"),
    (("example", "nas-random-fashion-mnist", "--list"), "pass either 'nas-random-fashion-mnist' or --list"),
])
def test_bad_example_input_is_one_line(args: tuple[str, ...], message: str) -> None:
    done = katib_nas(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr and done.stdout == ""


def test_examples_resolve_by_name_outside_the_checkout(tmp_path: Path) -> None:
    done = katib_nas("pipeline", "compile", "--output", str(tmp_path / "p.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert image("trial-cpu") in (tmp_path / "p.yaml").read_text()


def test_the_wheel_ships_the_examples_and_prepare_jobs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = tmp_path.glob("katib_nas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name, path in examples.catalogue().items():
        assert f"katib_nas/examples/{name}.yaml" in names, name


# --- fetch-cifar10 -----------------------------------------------------------------------------------------

def cifar_archive(path: Path, extra: dict[str, bytes] | None = None) -> str:
    """A small archive in CIFAR-10's binary layout (20 records per batch); returns its MD5."""
    rng = np.random.default_rng(0)
    members = {f"{FOLDER}/{name}": b"airplane\nautomobile\n" if name.endswith(".txt") else
               np.concatenate([rng.integers(0, 10, (20, 1)), rng.integers(0, 256, (20, 3072))], axis=1)
               .astype(np.uint8).tobytes() for name in FILES}
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_cifar10_unpacks_only_the_batches_the_trials_read(tmp_path: Path) -> None:
    archive = tmp_path / "cifar.tar.gz"
    md5 = cifar_archive(archive, {"../escape.bin": b"x", f"{FOLDER}/extra.py": b"print()"})
    dest = tmp_path / "volume"
    done = katib_nas("fetch-cifar10", "--dest", str(dest), "--source", str(archive), "--md5", md5)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (dest / FOLDER).iterdir()) == sorted(FILES)
    assert sorted(p.name for p in dest.iterdir()) == [FOLDER]  # no archive, no scratch left behind
    assert not (tmp_path / "escape.bin").exists()
    assert load_cifar10(dest / FOLDER).images.shape[0] == 100
    again = katib_nas("fetch-cifar10", "--dest", str(dest), "--source", str(tmp_path / "gone.tar.gz"))
    assert again.returncode == 0  # already there: nothing read


def test_fetch_cifar10_completes_a_partial_folder_keeping_the_users_files_and_drops_a_killed_fetchs_scratch(
        tmp_path: Path) -> None:
    """A partial folder used to be deleted whole (with the user's files in it), and a cut batch passed as done."""
    archive = tmp_path / "cifar.tar.gz"
    md5 = cifar_archive(archive)
    dest = tmp_path / "volume"
    folder = dest / FOLDER
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).write_bytes(b"x" * 3073 if name.endswith(".bin") else b"airplane\n")
    (folder / "data_batch_5.bin").write_bytes(b"x" * 1000)  # a copy cut short
    (folder / "my_notes.txt").write_text("mine")
    (dest / ".cifar10-killed").mkdir()  # what a fetch killed by SIGKILL or an eviction leaves
    (dest / ".cifar10-killed" / "cifar-10-binary.tar.gz").write_bytes(b"half an archive")
    done = katib_nas("fetch-cifar10", "--dest", str(dest), "--source", str(archive), "--md5", md5)
    assert done.returncode == 0, done.stderr
    assert (folder / "my_notes.txt").read_text() == "mine"
    assert sorted(p.name for p in dest.iterdir()) == [FOLDER]
    assert load_cifar10(folder).images.shape[0] == 100  # every batch the archive's


def test_fetch_cifar10_refuses_a_wrong_archive_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "cifar.tar.gz"
    cifar_archive(archive)
    dest = tmp_path / "volume"
    done = katib_nas("fetch-cifar10", "--dest", str(dest), "--source", str(archive))  # the published MD5
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "not CIFAR-10's binary archive" in done.stderr and "Traceback" not in done.stderr
    assert list(dest.iterdir()) == []
    missing = katib_nas("fetch-cifar10", "--dest", str(dest), "--source", str(tmp_path / "nothing.tar.gz"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# --- profile --configmap ----------------------------------------------------------------------------------

def test_profile_stores_the_table_in_the_configmap_trials_mount(tmp_path: Path) -> None:
    experiment = oneshot_digits_experiment(tmp_path / "oneshot.yaml")
    with start_cluster(tmp_path) as cluster:
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        for expected in ("created", "updated"):
            done = katib_nas("profile", str(experiment), "--out", str(tmp_path / "cpu.json"), "--repeats", "1",
                             "--warmup", "1", "--configmap", "latency-cpu", "--namespace", "kubeflow", env=env)
            assert done.returncode == 0, done.stderr
            assert f"{expected} ConfigMap kubeflow/latency-cpu (key cpu.json)" in done.stdout
        stored = cluster.get("configmaps", "kubeflow", "latency-cpu")["data"]["cpu.json"]
        assert json.loads(stored) == json.loads((tmp_path / "cpu.json").read_text())
        cluster.refuse("post", "configmaps", 403, "Forbidden", 'configmaps is forbidden: User "x" cannot create')
        refused = katib_nas("profile", str(experiment), "--out", str(tmp_path / "cpu.json"), "--repeats", "1",
                            "--warmup", "1", "--configmap", "other", "--namespace", "kubeflow", env=env)
        assert refused.returncode == 1 and "403 Forbidden" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("out, extra, message", [
    ("cpu.json", ["--configmap", "Latency_CPU"], "--configmap 'Latency_CPU' is not a ConfigMap name"),
    ("cpu.json", ["--configmap", "l" * 254], "is not a ConfigMap name"),
    ("cpu.json", ["--configmap", "latency-cpu", "--namespace", "Team_A"], "--namespace 'Team_A' is not a Kubernetes "
                                                                          "namespace"),
    ("cpu table.json", ["--configmap", "latency-cpu"], "the file name 'cpu table.json' is the ConfigMap's key"),
    ("cpu.json", ["--configmap", "latency-cpu"], "no Kubernetes credentials"),
])
def test_profile_refuses_what_kubernetes_would_refuse_before_it_profiles(tmp_path: Path, out: str, extra: list[str],
                                                                          message: str) -> None:
    """Profiling can take minutes on a GPU: a ConfigMap name, namespace or key Kubernetes refuses, or no
    credentials, is one line before it starts, and no table is written."""
    env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    done = katib_nas("profile", str(oneshot_digits_experiment(tmp_path / "oneshot.yaml")), "--out",
                     str(tmp_path / out), "--repeats", "1", "--warmup", "1", *extra, env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    assert not (tmp_path / out).exists()


def test_a_namespace_longer_than_kubernetes_allows_is_refused() -> None:
    from katib_nas.contract.errors import InvalidInput
    from katib_nas.deploy.examples import Target

    Target("registry.example.com/nas", "a" * 63).check()
    with pytest.raises(InvalidInput, match="is not a Kubernetes namespace"):
        Target("registry.example.com/nas", "a" * 64).check()
