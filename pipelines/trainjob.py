"""The final training as a Kubeflow Trainer TrainJob: create, wait, collect the model, clean up.

The TrainJob (trainer.kubeflow.org/v1alpha1: runtimeRef, trainer.image, command, numNodes, numProcPerNode,
resourcesPerNode, which read the same from Kubeflow Trainer v2.1 to v2.3, and the node pods' volumes) runs
`torchrun --no-python katib-nas trial ...` on every node of the torch-distributed runtime: data-parallel
training of the winning architecture, rank 0 writing a checkpoint every epoch, the metrics file and the
export into a folder of the run on a PersistentVolumeClaim (mounted at the same path in the TrainJob's
pods and in the step's pod; ReadWriteMany when the pods may land on several nodes).

- The node pods get the claims, and the annotation that keeps Istio from injecting a sidecar (which would keep
  a node's pod running after training, so the TrainJob would never complete in a namespace with injection, as
  Kubeflow's profile namespaces have), through Trainer v2.1's `spec.podTemplateOverrides`; a Trainer that
  refuses that field as unknown (v2.2 replaced it) gets the same through `spec.runtimePatches`, and the later
  attempts of the run use the field that was accepted.
- A TrainJob that fails is deleted and created again under the next attempt's name, up to `restarts`
  times; its first epoch starts from the last checkpoint, so a lost node costs at most one epoch.
- The step waits for the Complete or Failed condition (Kubeflow Trainer's), up to `timeout_s`.
- The TrainJob is deleted when the step ends, however it ends (also on SIGTERM or SIGINT); the run's folder
  keeps the checkpoint until the training succeeded and the model was copied out.
- An API refusal is one line: the action, the HTTP status, the API server's reason and message.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import is_dns1123_subdomain
from katib_nas.deploy.cluster import api_reason, load_credentials

from .katib_experiment import (
    POLL_S,
    READ_RETRY_S,
    RUN_LABEL,
    ReadsKeptFailing,
    Stopped,
    read_through,
    run_label,
    stop_signals_raise,
)

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
API_VERSION = f"{GROUP}/{VERSION}"
#: The replicated job and container of the torch-distributed runtime that run the trainer.
NODE = "node"
WORK_VOLUME = "katib-nas-work"
#: The node pods' annotations: no Istio sidecar, as on the examples' trial pods.
NODE_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
#: The fields through which a TrainJob adds volumes to the runtime's pods, in the order tried: Kubeflow Trainer
#: v2.1's, then v2.2's and later ones' (a strategic-merge patch of the runtime's JobSet template).
OVERRIDE_FIELDS = ("podTemplateOverrides", "runtimePatches")
#: The owner of the TrainJob's runtime patch (Trainer keys the patches by manager).
PATCH_MANAGER = "katib-nas"
#: The kinds of runtime a TrainJob's runtimeRef names: cluster-wide (Trainer's default) or in the TrainJob's namespace.
RUNTIME_KINDS = ("ClusterTrainingRuntime", "TrainingRuntime")
RBAC_HINT = "the step's service account needs create, get and delete on trainjobs.trainer.kubeflow.org " \
            "(manifests/pipeline-rbac)"


class TrainJobError(RuntimeError):
    """The final training could not be run to a result on Kubeflow Trainer; one line for the user."""


@dataclass(frozen=True)
class TrainJobSettings:
    """Where and how the final training runs as a TrainJob."""

    image: str
    claim: str
    mount_path: str = "/mnt/katib-nas"
    num_nodes: int = 2
    procs_per_node: int = 1
    cpu: str = ""
    memory: str = ""
    #: An extended resource per node, e.g. nvidia.com/gpu, and how many.
    accelerator: str = ""
    accelerator_count: int = 0
    #: The example trial's data claims (claim, mount path), mounted in every node as in the trials.
    data_volumes: tuple[tuple[str, str], ...] = ()
    #: The runtime the nodes run on: NAME (a ClusterTrainingRuntime) or TrainingRuntime/NAME (in `namespace`).
    runtime: str = "torch-distributed"
    namespace: str = "default"
    restarts: int = 2
    timeout_s: float = 24 * 3600
    poll_s: float = POLL_S
    #: How long the wait polls through API errors that pass before it gives the attempt up.
    read_retry_s: float = READ_RETRY_S


def runtime_ref(runtime: str) -> dict[str, str]:
    """The TrainJob's runtimeRef for `runtime` (NAME or KIND/NAME, KIND one of RUNTIME_KINDS); InvalidInput
    for any other text, which Trainer would refuse when the step creates the TrainJob."""
    kind, slash, name = runtime.rpartition("/")
    kind = kind if slash else RUNTIME_KINDS[0]
    if kind not in RUNTIME_KINDS or not is_dns1123_subdomain(name):
        raise InvalidInput(f"final_runtime {runtime[:80]!r} must be NAME (a ClusterTrainingRuntime) or "
                           f"TrainingRuntime/NAME (in the run's namespace), NAME a Kubernetes object name")
    return {"name": name, "kind": kind}


def job_name(run_id: str, attempt: int) -> str:
    """An RFC 1035 label naming the TrainJob of one attempt of one pipeline run."""
    return f"katib-nas-final-{run_label(run_id)}-{attempt}"


def trainjob_document(name: str, trial_args: list[str], settings: TrainJobSettings, work: str, label: str,
                      override_field: str = OVERRIDE_FIELDS[0]) -> dict[str, Any]:
    """The TrainJob of one attempt: `katib-nas trial` under torchrun, its checkpoint, metrics and export in
    `work` on the claim; the claims mounted through `override_field` (one of OVERRIDE_FIELDS)."""
    command = ["torchrun", "--no-python", "katib-nas", "trial", *trial_args, f"--checkpoint-dir={work}/checkpoint",
               f"--export-dir={work}/model", f"--metrics-file={work}/metrics.txt"]
    trainer: dict[str, Any] = {"image": settings.image, "command": command, "numNodes": settings.num_nodes,
                               "numProcPerNode": settings.procs_per_node}
    limits: dict[str, str | int] = {key: value for key, value in (("cpu", settings.cpu), ("memory", settings.memory))
                                    if value}
    if settings.accelerator and settings.accelerator_count:
        limits[settings.accelerator] = settings.accelerator_count
    if limits:
        trainer["resourcesPerNode"] = {"limits": limits}
    return {"apiVersion": API_VERSION, "kind": "TrainJob",
            "metadata": {"name": name, "namespace": settings.namespace, "labels": {RUN_LABEL: label}},
            "spec": {"runtimeRef": runtime_ref(settings.runtime), "trainer": trainer,
                     override_field: [node_pod_override(settings, override_field)]}}


def node_pod_override(settings: TrainJobSettings, override_field: str) -> dict[str, Any]:
    """The entry of `override_field` that gives the runtime's node pods the work claim, the data claims and
    NODE_POD_ANNOTATIONS."""
    claims = [(WORK_VOLUME, settings.claim, settings.mount_path)] + [
        (f"{WORK_VOLUME}-data-{index}", claim, path) for index, (claim, path) in enumerate(settings.data_volumes)]
    pod_spec = {
        "volumes": [{"name": name, "persistentVolumeClaim": {"claimName": claim}} for name, claim, _ in claims],
        "containers": [{"name": NODE, "volumeMounts": [{"name": name, "mountPath": path} for name, _, path in claims]}]}
    metadata = {"annotations": dict(NODE_POD_ANNOTATIONS)}
    if override_field == "podTemplateOverrides":
        return {"targetJobs": [{"name": NODE}], "metadata": metadata, "spec": pod_spec}
    if override_field == "runtimePatches":
        node_job = {"name": NODE, "template": {"spec": {"template": {"metadata": metadata, "spec": pod_spec}}}}
        return {"manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_job]}}}}
    raise ValueError(f"override_field must be one of {', '.join(OVERRIDE_FIELDS)}, not {override_field!r}")


def refused_as_unknown(err: Any, field: str) -> bool:
    """Whether the API server refused the TrainJob because its schema has no `spec.<field>` (strict validation)."""
    return err.status == 400 and f'unknown field "spec.{field}"' in api_reason(err)[1]


class TrainJobRun:
    """The TrainJob attempts of one pipeline run's final training."""

    def __init__(self, settings: TrainJobSettings, run_id: str, api: Any | None = None,
                 clock: Callable[[], float] = time.monotonic):
        from kubernetes import client

        if api is None:
            load_credentials()
            api = client.CustomObjectsApi()
        self.api = api
        self.settings = settings
        self.run_id = run_id
        self.label = run_label(run_id)
        self.work = Path(settings.mount_path) / f"katib-nas-final-{self.label}"
        self.clock = clock
        #: The override fields still to try: narrowed to the accepted one once a TrainJob is created.
        self.override_fields = OVERRIDE_FIELDS

    def train(self, trial_args: list[str], model_dir: Path) -> str:
        """Run attempts until one completes; copy its export into `model_dir`; the text of its metrics file."""
        with stop_signals_raise():
            for attempt in range(self.settings.restarts + 1):
                name = job_name(self.run_id, attempt)
                self._create(name, trial_args)
                try:
                    condition, message = self._wait(name)
                except Stopped as stop:
                    raise TrainJobError(f"the final training was stopped ({stop}) while TrainJob "
                                        f"{self._where(name)} ran") from None
                finally:
                    print(self._delete(name), flush=True)
                if condition == "Complete":
                    return self._collect(model_dir)
                print(f"TrainJob {self._where(name)} failed ({message}); attempt {attempt + 1} of "
                      f"{self.settings.restarts + 1}", flush=True)
        raise TrainJobError(f"the final training failed {self.settings.restarts + 1} time(s) on Kubeflow Trainer "
                            f"(last: {message}); its checkpoint stays in {self.work}/checkpoint for a new run")

    def _collect(self, model_dir: Path) -> str:
        export, metrics = self.work / "model", self.work / "metrics.txt"
        if not export.is_dir() or not metrics.is_file():
            raise TrainJobError(f"the TrainJob completed but {export} or {metrics} is missing: is the claim "
                                f"{self.settings.claim} mounted at {self.settings.mount_path} in this step too?")
        shutil.copytree(export, model_dir, dirs_exist_ok=True)
        text = metrics.read_text()
        shutil.rmtree(self.work, ignore_errors=True)
        return text

    def _create(self, name: str, trial_args: list[str]) -> None:
        from kubernetes.client.rest import ApiException

        for field in self.override_fields:
            document = trainjob_document(name, trial_args, self.settings, str(self.work), self.label, field)
            try:
                # Strict: an API server whose TrainJob lacks the field refuses the TrainJob, instead of dropping
                # the work claim's mount; the next field is tried then.
                self.api.create_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, document,
                                                         field_validation="Strict")
                self.override_fields = (field,)
                print(f"created TrainJob {self._where(name)} (volumes through spec.{field})", flush=True)
                return
            except ApiException as err:
                if err.status == 409:
                    break
                if not refused_as_unknown(err, field) or field == self.override_fields[-1]:
                    raise TrainJobError(self._failure("create", name, err)) from None
                print(f"this Kubeflow Trainer has no spec.{field} in its TrainJob; trying the next release's field",
                      flush=True)
        owner = ((self._get(name).get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)
        if owner != self.label:
            raise TrainJobError(f"cannot create TrainJob {self._where(name)}: 409 AlreadyExists, and it was not "
                                f"created by this pipeline run (label {RUN_LABEL}={owner or 'absent'})")
        print(f"adopted TrainJob {self._where(name)}", flush=True)

    def _get(self, name: str) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, name)
        except ApiException as err:
            raise TrainJobError(self._failure("get", name, err)) from None

    def _wait(self, name: str) -> tuple[str, str]:
        """("Complete" or "Failed", message) from the TrainJob's conditions; TrainJobError after the timeout.
        Read errors that pass (a busy or restarting API server, a dropped connection) are polled through for up
        to READ_RETRY_S in a row."""
        from kubernetes.client.rest import ApiException

        deadline = self.clock() + self.settings.timeout_s
        while True:
            try:
                job = read_through(lambda: self.api.get_namespaced_custom_object(
                    GROUP, VERSION, self.settings.namespace, PLURAL, name), self.clock, self.settings.poll_s,
                    self.settings.read_retry_s)
            except ReadsKeptFailing as kept:
                raise TrainJobError(self._failure("get", name, kept.error) if isinstance(kept.error, ApiException)
                                    else f"cannot get TrainJob {self._where(name)}: {type(kept.error).__name__}"
                                    ) from None
            except ApiException as err:
                raise TrainJobError(self._failure("get", name, err)) from None
            for condition in (job.get("status") or {}).get("conditions") or []:
                if condition.get("type") in ("Complete", "Failed") and str(condition.get("status")) == "True":
                    return condition["type"], condition.get("message") or condition.get("reason") or ""
            if self.clock() >= deadline:
                raise TrainJobError(f"TrainJob {self._where(name)} did not finish within "
                                    f"{self.settings.timeout_s / 60:g} minutes")
            time.sleep(self.settings.poll_s)

    def _delete(self, name: str) -> str:
        from kubernetes.client.rest import ApiException

        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.settings.namespace, PLURAL, name,
                                                     propagation_policy="Foreground")
        except ApiException as err:
            if err.status == 404:
                return f"TrainJob {self._where(name)} was already gone"
            return f"could not delete TrainJob {self._where(name)}: " + self._failure("delete", name, err)
        return f"deleted TrainJob {self._where(name)}"

    def _where(self, name: str) -> str:
        return f"{self.settings.namespace}/{name}"

    def _failure(self, action: str, name: str, err: Any) -> str:
        reason, message = api_reason(err)
        hint = {400: "; the TrainJob mounts the work claim through spec.podTemplateOverrides (Kubeflow Trainer v2.1) "
                     "or spec.runtimePatches (v2.2 and later): is one of those installed?",
                403: f"; {RBAC_HINT}",
                404: "; is Kubeflow Trainer installed (the trainjobs.trainer.kubeflow.org resource) and the "
                     "namespace right?"}.get(err.status, "") if action != "delete" else ""
        return f"cannot {action} TrainJob {self._where(name)}: {err.status} {reason}: {message}{hint}"
