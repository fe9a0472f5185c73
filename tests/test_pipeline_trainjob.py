"""The pipeline's final training as a TrainJob, against the Kubernetes API emulator on loopback.

No Kubeflow Trainer runs here: the test plays it. It checks the TrainJob the step created against Kubeflow
Trainer v2.1's API (kubeflow-trainer-api's models, unknown fields refused) and its torch plugin's rules,
then runs the trainer's command as the torch plugin would on two nodes: one real `torchrun` per node with
PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT, sharing the claim's
folder (a temporary directory mounted at the same path), and writes the TrainJob's Complete or Failed
condition. The first attempt loses a node after its first checkpoint; the second resumes from it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s

from katib_nas.pipelines import steps
from katib_nas.pipelines.trainjob import GROUP, OVERRIDE_FIELDS, PLURAL, VERSION, TrainJobSettings
from katib_nas.runner.launch import free_port
from katib_nas.trial_image.checkpoint import CHECKPOINT_FILE

from .conftest import schema_errors
from .kube_emulator import Cluster, start_cluster
from .support.flaky_api import FlakyReads
from .support.manifests import pipeline_role, player_api, role_grants, role_refusals, step_requests
from .support.trainjob import (
    node_mounts,
    node_pod_template,
    trainjob_errors,
    trainjob_schema_v2_2,
    unknown_field_status,
)

NAMESPACE = "team-a"
ARCH = "in8x8x1-cls10-stem8/w16:c3+s3/w24s2:c3@0"
CONFIG = steps.FinalTraining(dataset="digits", epochs=3, batch_size=64, seed=1, threads=1)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with start_cluster(tmp_path) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        yield running


def settings(claim_dir: Path, **changes: Any) -> TrainJobSettings:
    values = dict(image="docker.io/katibnas/trial-cpu:0.1.0", claim="final-work", mount_path=str(claim_dir),
                  num_nodes=2, procs_per_node=1, cpu="2", memory="2Gi", namespace=NAMESPACE, restarts=1,
                  timeout_s=600, poll_s=0.2)
    values.update(changes)
    return TrainJobSettings(**values)  # type: ignore[arg-type]


def trainjobs(api: k8s.CustomObjectsApi) -> list[dict[str, Any]]:
    return api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]


def node_environment(node: int, nodes: int, procs: int, port: int) -> dict[str, str]:
    """What Kubeflow Trainer's torch plugin gives the trainer container of node `node` (v2.1.0)."""
    env = dict(os.environ, PET_NNODES=str(nodes), PET_NPROC_PER_NODE=str(procs), PET_NODE_RANK=str(node),
               PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def write_finished_work(work: Path) -> None:
    """What a completed final training leaves in its folder on the claim: the export and the metrics file."""
    (work / "model").mkdir(parents=True)
    (work / "model" / "model.json").write_text("{}")
    (work / "metrics.txt").write_text("2026-12-04T00:00:00Z Validation-Accuracy=0.5\n")


class PlayedTrainer:
    """Runs every TrainJob the step creates, as Kubeflow Trainer would; `fail_first` kills a node of the first
    one after its first checkpoint."""

    def __init__(self, cluster: Cluster, schema: dict[str, Any], fail_first: bool):
        self.api = cluster.api()
        self.schema = schema
        self.fail_first = fail_first
        self.seen: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.problems: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(self.seen) < 2:
            fresh = [j for j in trainjobs(self.api) if j["metadata"]["name"] not in {s["metadata"]["name"]
                                                                                      for s in self.seen}]
            for job in fresh:
                self.seen.append(job)
                self.problems += schema_errors(self.schema, job) + trainjob_errors(job, job["metadata"]["name"])
                failing = self.fail_first and len(self.seen) == 1
                self._finish(job, self._run(job, failing))
                if not failing:
                    return
            time.sleep(0.2)

    def _run(self, job: dict[str, Any], failing: bool) -> bool:
        trainer = job["spec"]["trainer"]
        port = free_port()
        nodes = [subprocess.Popen(trainer["command"], env=node_environment(n, trainer["numNodes"],
                                                                          trainer["numProcPerNode"], port),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  stdin=subprocess.DEVNULL) for n in range(trainer["numNodes"])]
        if failing:
            checkpoint = Path(next(a for a in trainer["command"] if a.startswith("--checkpoint-dir="))
                              .split("=", 1)[1]) / "checkpoint.pt"
            while not checkpoint.exists() and nodes[1].poll() is None:
                time.sleep(0.1)
            nodes[1].kill()  # a node is lost
        while any(node.poll() is None for node in nodes):
            if any(node.poll() not in (None, 0) for node in nodes):  # JobSet fails the whole job: pods deleted
                for node in nodes:
                    node.terminate()
            time.sleep(0.1)
        outputs = [node.communicate(timeout=600)[0] for node in nodes]
        self.logs.append("\n".join(outputs))
        return all(node.returncode == 0 for node in nodes)

    def _finish(self, job: dict[str, Any], succeeded: bool) -> None:
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True",
                     "reason": "JobSetCompleted" if succeeded else "JobSetFailed",
                     "message": "jobset completed" if succeeded else "jobset failed: a node's pod failed"}
        self.api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, job["metadata"]["name"],
                                                       {"status": {"conditions": [condition]}})


def test_the_final_training_survives_a_lost_node_and_resumes_from_its_checkpoint(
        cluster: Cluster, tmp_path: Path, katib_schemas: dict[str, Any]) -> None:
    claim = tmp_path / "claim"
    claim.mkdir()
    trainer = PlayedTrainer(cluster, katib_schemas["trainjob"], fail_first=True)
    metrics = steps.train_final_trainjob(ARCH, CONFIG, settings(claim), "run-77", tmp_path / "model")
    trainer.thread.join(60)
    logs = "\n---- next attempt ----\n".join(trainer.logs)  # the nodes' output, shown when an assertion fails
    assert not trainer.thread.is_alive(), logs
    assert trainer.problems == []
    assert [j["metadata"]["name"] for j in trainer.seen] == ["katib-nas-final-%s-0" % run_hash("run-77"),
                                                            "katib-nas-final-%s-1" % run_hash("run-77")], logs
    first = trainer.seen[0]
    assert first["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}
    assert first["spec"]["trainer"]["command"][:4] == ["torchrun", "--no-python", "katib-nas", "trial"]
    assert first["spec"]["podTemplateOverrides"][0]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "final-work"}
    assert "resuming from" in trainer.logs[1] and "resuming from" not in trainer.logs[0], logs
    assert 0.5 < float(metrics["Validation-Accuracy"]) <= 1.0, logs
    assert (tmp_path / "model" / "model.json").is_file()
    assert trainjobs(cluster.api()) == [] and list(claim.iterdir()) == []  # TrainJobs deleted, work folder gone


def run_hash(run_id: str) -> str:
    from katib_nas.pipelines.katib_experiment import run_label

    return run_label(run_id)


@pytest.mark.parametrize("status, reason, hint", [
    (403, "Forbidden", "the step's service account needs create, get and delete on trainjobs.trainer.kubeflow.org"),
    (404, "NotFound", "is Kubeflow Trainer installed (the trainjobs.trainer.kubeflow.org resource)"),
    (400, "BadRequest", "the TrainJob mounts the work claim through spec.podTemplateOverrides (Kubeflow Trainer v2.1) "
                        "or spec.runtimePatches (v2.2 and later): is one of those installed?"),
])
def test_an_api_refusal_is_one_line_naming_what_to_fix(cluster: Cluster, tmp_path: Path, status: int, reason: str,
                                                       hint: str) -> None:
    cluster.refuse("post", "trainjobs", status, reason, f"trainjobs is {reason.lower()}")
    with pytest.raises(steps.StepFailed) as failed:
        steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path), "run-1", tmp_path / "model")
    message = str(failed.value)
    assert "\n" not in message
    assert re.match(rf"cannot create TrainJob {NAMESPACE}/katib-nas-final-\w+-0: {status} {reason}: ", message)
    assert hint in message
    # strict field validation: a Trainer whose TrainJob lacks a field refuses it rather than drop the mount
    [post] = [r for r in cluster.emulator if str(r.method.value).upper() == "POST" and "/trainjobs" in str(r.url)]
    assert post.params.get("fieldValidation") == "Strict"


def has_spec_field(field: str) -> Any:
    return lambda body: field in ((body or {}).get("spec") or {})


def test_a_trainer_without_pod_template_overrides_mounts_the_claims_through_runtime_patches(
        cluster: Cluster, tmp_path: Path, katib_schemas: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Kubeflow Trainer v2.2 and later refuse spec.podTemplateOverrides under strict validation: the TrainJob is
    created again with spec.runtimePatches, which the played Trainer holds to v2.2's schema and mounts; the second
    attempt goes straight to the accepted field."""
    cluster.refuse_when("post", "trainjobs", has_spec_field("podTemplateOverrides"), 400, "BadRequest",
                        unknown_field_status("podTemplateOverrides"))
    claim = tmp_path / "claim"
    api, schema = player_api(cluster), trainjob_schema_v2_2(katib_schemas["trainjob"])
    seen: list[dict[str, Any]] = []

    def play() -> None:
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            for job in trainjobs(api):
                if job["metadata"]["name"] in {j["metadata"]["name"] for j in seen}:
                    continue
                seen.append(job)
                assert schema_errors(schema, job) == [] and trainjob_errors(job, job["metadata"]["name"]) == []
                mounted = Path(node_mounts(job)["final-work"])  # the claim, where the patch mounts it
                export = Path(next(a for a in job["spec"]["trainer"]["command"]
                                   if a.startswith("--export-dir=")).split("=", 1)[1])
                assert export.is_relative_to(mounted), (export, mounted)
                condition = {"type": "Failed", "status": "True", "message": "a node was lost"}
                if len(seen) == 2:
                    write_finished_work(export.parent)
                    condition = {"type": "Complete", "status": "True", "message": "jobset completed"}
                api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, job["metadata"]["name"],
                                                          {"status": {"conditions": [condition]}})
            time.sleep(0.05)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    metrics = steps.train_final_trainjob(ARCH, CONFIG, settings(claim), "run-11", tmp_path / "model")
    player.join(10)
    assert metrics["Validation-Accuracy"] == "0.5" and (tmp_path / "model" / "model.json").is_file()
    assert [sorted(j["spec"]) for j in seen] == [["runtimePatches", "runtimeRef", "trainer"]] * 2
    assert [j["spec"]["runtimePatches"][0]["manager"] for j in seen] == ["katib-nas"] * 2
    posts = [r for r in cluster.emulator if str(r.method.value).upper() == "POST" and "/trainjobs" in str(r.url)]
    assert [sorted(r.data["spec"])[0] for r in posts] == ["podTemplateOverrides", "runtimePatches", "runtimePatches"]
    assert all(r.params.get("fieldValidation") == "Strict" for r in posts)
    out = capsys.readouterr().out
    assert out.count("this Kubeflow Trainer has no spec.podTemplateOverrides in its TrainJob") == 1
    assert "(volumes through spec.runtimePatches)" in out


def test_a_trainer_refusing_both_override_fields_fails_in_one_line(cluster: Cluster, tmp_path: Path) -> None:
    for field in OVERRIDE_FIELDS:
        cluster.refuse_when("post", "trainjobs", has_spec_field(field), 400, "BadRequest", unknown_field_status(field))
    with pytest.raises(steps.StepFailed) as failed:
        steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path), "run-12", tmp_path / "model")
    message = str(failed.value)
    assert "\n" not in message
    assert 'unknown field "spec.runtimePatches"' in message and "is one of those installed?" in message
    assert cluster.requests_to("post", "trainjobs") == 2 and trainjobs(cluster.api()) == []


def test_a_trainjob_that_never_finishes_times_out_and_is_deleted(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(steps.StepFailed, match=r"did not finish within 0.05 minutes"):
        steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path, timeout_s=3), "run-2", tmp_path / "model")
    assert trainjobs(cluster.api()) == []


def test_a_passing_api_error_while_waiting_does_not_give_the_training_up(cluster: Cluster, tmp_path: Path) -> None:
    """One 503 used to delete the running TrainJob and fail the step."""
    api = player_api(cluster)

    def complete_it() -> None:
        deadline = time.monotonic() + 60
        while not trainjobs(api) and time.monotonic() < deadline:
            time.sleep(0.05)
        [job] = trainjobs(api)
        command = job["spec"]["trainer"]["command"]
        work = Path(next(a for a in command if a.startswith("--export-dir=")).split("=", 1)[1]).parent
        write_finished_work(work)
        api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, job["metadata"]["name"], {
            "status": {"conditions": [{"type": "Complete", "status": "True", "message": "jobset completed"}]}})

    player = threading.Thread(target=complete_it, daemon=True)
    player.start()
    made = dataclasses.replace(settings(tmp_path), read_retry_s=60)
    metrics = steps.train_final_trainjob(ARCH, CONFIG, made, "run-5", tmp_path / "model",
                                         api=FlakyReads(cluster.api(), 3))
    player.join(10)
    assert metrics["Validation-Accuracy"] == "0.5" and (tmp_path / "model" / "model.json").is_file()


def test_a_retried_step_adopts_its_own_trainjob_and_refuses_someone_elses(cluster: Cluster, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]
                                                                            ) -> None:
    from katib_nas.pipelines.katib_experiment import RUN_LABEL, run_label
    from katib_nas.pipelines.trainjob import job_name

    other = job_name("run-8", 0)
    cluster.put("trainjobs", NAMESPACE, other, {"spec": {"runtimeRef": {"name": "torch-distributed"}}})
    with pytest.raises(steps.StepFailed, match=r"409 AlreadyExists, and it was not created by this pipeline run"):
        steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path), "run-8", tmp_path / "model")
    assert cluster.get("trainjobs", NAMESPACE, other) is not None  # someone else's: left alone

    ours = job_name("run-9", 0)
    work = tmp_path / f"katib-nas-final-{run_label('run-9')}"
    write_finished_work(work)
    cluster.put("trainjobs", NAMESPACE, ours, {"metadata": {"labels": {RUN_LABEL: run_label("run-9")}},
                                               "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    metrics = steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path), "run-9", tmp_path / "model")
    assert metrics["Validation-Accuracy"] == "0.5"
    assert f"adopted TrainJob {NAMESPACE}/{ours}" in capsys.readouterr().out


def test_a_trainjob_read_refused_for_good_fails_the_attempt_at_once(cluster: Cluster, tmp_path: Path) -> None:
    cluster.refuse("get", "trainjobs", 403, "Forbidden", "trainjobs.trainer.kubeflow.org is forbidden")
    made = dataclasses.replace(settings(tmp_path), read_retry_s=60, restarts=0)
    with pytest.raises(steps.StepFailed, match=r"cannot get TrainJob .*: 403 Forbidden"):
        steps.train_final_trainjob(ARCH, CONFIG, made, "run-10", tmp_path / "model")


def test_every_attempt_failing_keeps_the_checkpoint_and_says_so(cluster: Cluster, tmp_path: Path) -> None:
    """Each attempt writes a checkpoint into its --checkpoint-dir before it fails, as a node lost after an epoch
    would: the last one is still there, where the error says, for a new run to resume from. The requests the
    step sent are the ones manifests/pipeline-rbac's Role grants in trainer.kubeflow.org."""
    api = player_api(cluster)
    written: list[Path] = []

    def fail_each() -> None:
        done: set[str] = set()
        deadline = time.monotonic() + 120
        while len(done) < 2 and time.monotonic() < deadline:
            for job in trainjobs(api):
                name = job["metadata"]["name"]
                if name not in done:
                    done.add(name)
                    directory = Path(next(a for a in job["spec"]["trainer"]["command"]
                                          if a.startswith("--checkpoint-dir=")).split("=", 1)[1])
                    directory.mkdir(parents=True, exist_ok=True)
                    (directory / CHECKPOINT_FILE).write_text(f"after epoch 1 of {name}")
                    written.append(directory / CHECKPOINT_FILE)
                    api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": {
                        "conditions": [{"type": "Failed", "status": "True", "message": "pods failed"}]}})
            time.sleep(0.1)

    player = threading.Thread(target=fail_each, daemon=True)
    player.start()
    with pytest.raises(steps.StepFailed, match=r"failed 2 time\(s\) on Kubeflow Trainer \(last: pods failed\); its "
                                               r"checkpoint stays in .*/checkpoint for a new run") as failed:
        steps.train_final_trainjob(ARCH, CONFIG, settings(tmp_path), "run-3", tmp_path / "model")
    player.join(30)
    assert trainjobs(api) == []
    stays = re.search(r"checkpoint stays in (\S+) for a new run", str(failed.value))
    assert stays is not None
    named = Path(stays.group(1)) / CHECKPOINT_FILE
    assert written == [named, named]  # both attempts checkpoint into the folder the message names
    assert named.read_text() == f"after epoch 1 of katib-nas-final-{run_hash('run-3')}-1"
    role, requests = pipeline_role(), step_requests(cluster)
    assert role_refusals(role, requests) == []
    assert {(r.verb, r.resource) for r in requests if r.group == GROUP} == role_grants(role, GROUP)


# --- the pipeline's wiring ---------------------------------------------------------------------------------

def test_compiled_with_a_work_claim_the_final_step_mounts_it_and_hands_it_to_the_trainjob(tmp_path: Path) -> None:
    import yaml

    from katib_nas.cli.main import main

    output = tmp_path / "pipeline.yaml"
    assert main(["pipeline", "compile", "--trainjob-pvc", "final-work:/mnt/work", "--output", str(output)]) == 0
    compiled = list(yaml.safe_load_all(output.read_text()))
    inputs = compiled[0]["root"]["dag"]["tasks"]["train-final"]["inputs"]["parameters"]
    assert inputs["work_claim"]["runtimeValue"]["constant"] == "final-work"
    assert inputs["work_mount"]["runtimeValue"]["constant"] == "/mnt/work"
    assert inputs["backend"]["componentInputParameter"] == "final_backend"
    assert inputs["runtime"]["componentInputParameter"] == "final_runtime"
    mounts = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-final"]["pvcMount"]
    assert [(m["constant"], m["mountPath"]) for m in mounts] == [("final-work", "/mnt/work")]


def test_compiled_for_the_gpu_example_every_trainjob_node_gets_the_steps_limits_and_data_claims(
        tmp_path: Path, katib_schemas: dict[str, Any]) -> None:
    """Without them a node took every CPU of its host as threads, no GPU and not the data the trials read."""
    import yaml

    from katib_nas.cli.main import main
    from katib_nas.pipelines.trainjob import trainjob_document

    output = tmp_path / "pipeline.yaml"
    assert main(["pipeline", "compile", "--example", "envelopenet-cifar10-gpu", "--trainjob-pvc",
                 "final-work:/mnt/work", "--memory", "8Gi", "--cpu", "4", "--output", str(output)]) == 0
    inputs = list(yaml.safe_load_all(output.read_text()))[0]["root"]["dag"]["tasks"]["train-final"]["inputs"]
    constant = {name: value["runtimeValue"]["constant"] for name, value in inputs["parameters"].items()
                if "runtimeValue" in value}
    made = steps.trainjob_settings("img", constant["work_claim"], constant["work_mount"], 2, 1, NAMESPACE,
                                   constant["node_resources"], constant["data_volumes"])
    document = trainjob_document("final-0", ["--architecture=x"], made, "/mnt/work/run", "run")
    limits = document["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert limits == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": 1}
    assert node_mounts(document) == {"final-work": "/mnt/work", **dict(made.data_volumes)}
    assert len(made.data_volumes) == 1
    assert schema_errors(katib_schemas["trainjob"], document) == [] and trainjob_errors(document, "final-0") == []


@pytest.mark.parametrize("arguments, message", [
    ({"final_backend": "slurm"}, "final_backend 'slurm' must be one of pod, trainjob"),
    ({"final_backend": "trainjob", "final_nodes": 0}, "final_nodes must be a whole number in [1, 1024], not 0"),
    ({"final_runtime": "JobSet/katib-nas-torch"}, "final_runtime 'JobSet/katib-nas-torch' must be NAME (a "
                                                  "ClusterTrainingRuntime) or TrainingRuntime/NAME"),
    ({"final_runtime": "TrainingRuntime/Katib_NAS"}, "final_runtime 'TrainingRuntime/Katib_NAS' must be"),
    ({"final_runtime": "TrainingRuntime/"}, "final_runtime 'TrainingRuntime/' must be"),
    ({"final_runtime": ""}, "final_runtime '' must be"),
    ({"final_runtime": "/torch-distributed"}, "final_runtime '/torch-distributed' must be"),
])
def test_bad_final_training_arguments_are_refused_before_the_run(arguments: dict[str, Any], message: str) -> None:
    from katib_nas.contract.errors import InvalidInput
    from katib_nas.pipelines.pipeline import check_arguments

    with pytest.raises(InvalidInput, match=re.escape(message)):
        check_arguments(arguments)


@pytest.mark.parametrize("override_field", OVERRIDE_FIELDS)
@pytest.mark.parametrize("resources, volumes, limits, mounts", [
    ("", "", None, {"final-work": "/mnt/work"}),
    ("cpu=2,memory=2Gi", "", {"cpu": "2", "memory": "2Gi"}, {"final-work": "/mnt/work"}),
    ("nvidia.com/gpu=2", "datasets:/mnt/data,labels:/mnt/labels", {"nvidia.com/gpu": 2},
     {"final-work": "/mnt/work", "datasets": "/mnt/data", "labels": "/mnt/labels"}),
])
def test_the_steps_limits_and_claims_reach_every_node(resources: str, volumes: str, limits: dict[str, Any] | None,
                                                      mounts: dict[str, str], override_field: str,
                                                      katib_schemas: dict[str, Any]) -> None:
    """In the TrainJob of Kubeflow Trainer v2.1 (podTemplateOverrides) and of v2.2 and later (runtimePatches),
    each checked against its release's schema."""
    from katib_nas.pipelines.trainjob import trainjob_document

    made = steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, NAMESPACE, resources, volumes)
    document = trainjob_document("final-0", ["--architecture=x"], made, "/mnt/work/run", "run", override_field)
    assert document["spec"]["trainer"].get("resourcesPerNode") == (limits and {"limits": limits})
    assert node_mounts(document) == mounts
    schema = katib_schemas["trainjob"] if override_field == "podTemplateOverrides" else \
        trainjob_schema_v2_2(katib_schemas["trainjob"])
    assert schema_errors(schema, document) == [] and trainjob_errors(document, "final-0") == []


def test_each_release_schema_refuses_the_other_releases_field(katib_schemas: dict[str, Any]) -> None:
    """The two schemas the tests hold the TrainJob to tell v2.1's form from v2.2's."""
    from katib_nas.pipelines.trainjob import trainjob_document

    made = steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, NAMESPACE)
    v2_1, v2_2 = katib_schemas["trainjob"], trainjob_schema_v2_2(katib_schemas["trainjob"])
    for field, schema in (("runtimePatches", v2_1), ("podTemplateOverrides", v2_2)):
        errors = schema_errors(schema, trainjob_document("final-0", [], made, "/w", "run", field))
        assert any(f"'{field}' was unexpected" in error for error in errors), errors


@pytest.mark.parametrize("field", OVERRIDE_FIELDS)
def test_the_node_pods_opt_out_of_istio_sidecar_injection_on_each_release(field: str,
                                                                         katib_schemas: dict[str, Any]) -> None:
    """In a namespace with Istio injection (Kubeflow's profile namespaces, where pipelines run) a sidecar keeps a
    node's pod running after training: the TrainJob never completes and the step waits until its timeout. The
    opt-out rides on the same field as the claims, valid under that release's schema."""
    from katib_nas.pipelines.trainjob import trainjob_document

    made = steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, NAMESPACE)
    document = trainjob_document("final-0", [], made, "/w", "run", field)
    schema = katib_schemas["trainjob"] if field == "podTemplateOverrides" else \
        trainjob_schema_v2_2(katib_schemas["trainjob"])
    assert schema_errors(schema, document) == []
    assert node_pod_template(document)["metadata"] == {"annotations": {"sidecar.istio.io/inject": "false"}}
    assert node_mounts(document) == {"final-work": "/mnt/work"}


@pytest.mark.parametrize("field", OVERRIDE_FIELDS)
@pytest.mark.parametrize("runtime, ref", [
    ("torch-distributed", {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}),
    ("ClusterTrainingRuntime/torch-distributed", {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}),
    ("TrainingRuntime/katib-nas-torch", {"name": "katib-nas-torch", "kind": "TrainingRuntime"}),
])
def test_the_final_runtime_names_a_cluster_or_a_namespaced_runtime(runtime: str, ref: dict[str, str], field: str,
                                                                  katib_schemas: dict[str, Any]) -> None:
    from katib_nas.pipelines.trainjob import trainjob_document

    made = steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, NAMESPACE, runtime=runtime)
    document = trainjob_document("final-0", [], made, "/w", "run", field)
    assert document["spec"]["runtimeRef"] == ref
    schema = katib_schemas["trainjob"] if field == "podTemplateOverrides" else \
        trainjob_schema_v2_2(katib_schemas["trainjob"])
    assert schema_errors(schema, document) == [] and trainjob_errors(document, "final-0") == []


def test_the_prepared_runtime_is_the_namespaced_one_the_overrides_can_target() -> None:
    """examples/prepare/trainjob-runtime.yaml gives the nodes the restricted security context that Trainer v2.1's
    overrides cannot; its replicated job is the one the overrides target."""
    import yaml

    from katib_nas.pipelines.trainjob import NODE

    prepared = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "prepare" /
                               "trainjob-runtime.yaml").read_text())
    assert (prepared["kind"], prepared["metadata"]["name"]) == ("TrainingRuntime", "katib-nas-torch")
    jobs = [job["name"] for job in prepared["spec"]["template"]["spec"]["replicatedJobs"]]
    assert NODE in jobs


def test_a_runtime_the_trainer_would_refuse_fails_the_final_step_with_one_line() -> None:
    """A run started from the KFP UI skips check_arguments: the final step refuses the runtime itself."""
    with pytest.raises(steps.StepFailed, match=r"^final_runtime 'TrainingRuntime/a\.\.b' must be NAME"):
        steps.trainjob_settings("image", "final-work", "/mnt/work", 2, 1, "team-a", runtime="TrainingRuntime/a..b")


def test_another_override_field_is_a_value_error() -> None:
    from katib_nas.pipelines.trainjob import trainjob_document

    made = steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, NAMESPACE)
    with pytest.raises(ValueError, match=r"override_field must be one of podTemplateOverrides, runtimePatches, "
                                         r"not 'podSpecOverrides'"):
        trainjob_document("final-0", [], made, "/w", "run", "podSpecOverrides")


def test_trainjob_backend_without_a_work_claim_fails_the_step_with_one_line() -> None:
    with pytest.raises(steps.StepFailed, match=r"final_backend=trainjob needs a PersistentVolumeClaim .* compile "
                                               r"the pipeline with --trainjob-pvc CLAIM:/path"):
        steps.trainjob_settings("image", "", "", 2, 1, "team-a")


def test_without_a_namespace_the_trainjob_goes_to_the_steps_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from katib_nas.pipelines import katib_experiment

    account = tmp_path / "namespace"
    account.write_text("team-a\n")
    monkeypatch.setattr(katib_experiment, "SERVICE_ACCOUNT_NAMESPACE", account)
    assert steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, "").namespace == "team-a"
    assert steps.trainjob_settings("img", "final-work", "/mnt/work", 2, 1, "team-b").namespace == "team-b"
