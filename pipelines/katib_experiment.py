"""The search step's Katib Experiment on a cluster: create (or adopt), wait, read the optimal trial, clean up.

Calls go with the credentials of the step's pod (its service account; outside a pod, the kubeconfig) and are
the ones manifests/pipeline-rbac grants: experiments create, get and delete; trials get and list (the report);
suggestions get (only to explain a failure). Create, get and delete use the kubernetes client's
CustomObjectsApi, whose errors carry the HTTP status and the API server's reason (the 409 adoption below
and one-line refusals need both); the best-effort reads that explain a failure use Katib's SDK (KatibClient),
on the same connection settings.

- Namespace: the one asked for, else the pod's own (its service account's namespace), else the kubeconfig
  context's, else "default".
- A retried step finds its Experiment already there (409, the name comes from the run id): it adopts it when
  the Experiment carries this run's label, and refuses to touch anyone else's.
- The Experiment is deleted when the step fails, times out or is stopped (SIGTERM, SIGINT); after a success
  it is kept (for the Katib UI and `katib-nas report --experiment`) unless `keep` is off.
- An API refusal is one line: the action, the HTTP status, the API server's reason and message.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from katib_nas.deploy.cluster import api_reason, load_credentials

GROUP, VERSION = "kubeflow.org", "v1beta1"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RUN_LABEL = "katib-nas/pipeline-run"
RBAC_HINT = "the step's service account needs the katib-nas-pipeline Role (manifests/pipeline-rbac)"


class KatibStepError(RuntimeError):
    """The Experiment could not be run to a result; one line for the user."""


class TimedOut(KatibStepError):
    """The Experiment did not finish within the step's timeout_minutes."""


class Unreachable(KatibStepError):
    """The Experiment could not be read for READ_RETRY_S: its state is unknown, so it is left for a retried step
    to adopt rather than deleted."""


#: How long the wait goes on through API errors that pass (5xx, 429, a dropped connection) before it gives up.
READ_RETRY_S = 600.0
#: Seconds between two reads of an object a step waits for (a Katib Experiment, a TrainJob).
POLL_S = 15
#: HTTP statuses of an API server that is busy or restarting, not of a request that is wrong.
PASSING_STATUSES = frozenset({429, 500, 502, 503, 504})


class ReadsKeptFailing(Exception):
    """Reads failed with errors that pass for the whole retry window; `error` is the last one."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def read_through(read: Callable[[], Any], clock: Callable[[], float], poll_s: float, retry_s: float) -> Any:
    """read(), polled again while it fails with an error that passes (a busy or restarting API server: 429,
    5xx; a dropped connection: urllib3's errors) for up to `retry_s` in a row, then ReadsKeptFailing; any other
    API error is raised as it is."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    failing_since: float | None = None
    while True:
        try:
            return read()
        except (ApiException, HTTPError) as err:
            if isinstance(err, ApiException) and err.status not in PASSING_STATUSES:
                raise
            failing_since = clock() if failing_since is None else failing_since
            if clock() - failing_since >= retry_s:
                raise ReadsKeptFailing(err) from None
            time.sleep(poll_s)


class Stopped(Exception):
    """The step was asked to stop (SIGTERM from Kubernetes or Argo, SIGINT)."""


@dataclass(frozen=True)
class Finished:
    """A finished Experiment: its condition, Katib's message and the optimal trial as Katib reports it."""

    condition: str
    message: str
    optimal: dict[str, Any] = field(default_factory=dict)


def default_namespace(service_account_file: Path | None = None, kubeconfig: str | None = None,
                      context: str | None = None) -> str:
    """The pod's own namespace; outside a pod the kubeconfig context's (`kubeconfig`, else $KUBECONFIG, else
    ~/.kube/config; `context`, else the current one); else "default"."""
    try:
        return (service_account_file or SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
    except OSError:
        pass
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    except (config.ConfigException, OSError):
        return "default"
    if context:
        active = next((c for c in contexts or [] if c.get("name") == context), {})
    return (active or {}).get("context", {}).get("namespace") or "default"


def run_label(run_id: str) -> str:
    """A label value that names the pipeline run (a hash: run ids may hold characters labels refuse)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:16]


class KatibExperiment:
    """One Experiment of one pipeline run, in one namespace."""

    def __init__(self, document: dict[str, Any], namespace: str, run_id: str, api: Any | None = None):
        from kubernetes import client

        if api is None:
            load_credentials()
            api = client.CustomObjectsApi()
        self.api = api
        self.namespace = namespace
        self.name = document["metadata"]["name"]
        self.label = run_label(run_id)
        metadata = {**document["metadata"], "namespace": namespace,
                    "labels": {**(document["metadata"].get("labels") or {}), RUN_LABEL: self.label}}
        self.document = {**document, "metadata": metadata}

    def __str__(self) -> str:
        return f"Katib Experiment {self.namespace}/{self.name}"

    # create or adopt -----------------------------------------------------------------------------------
    def create_or_adopt(self) -> str:
        """Create the Experiment; on 409, adopt it if this run created it. Returns "created" or "adopted"."""
        from kubernetes.client.rest import ApiException

        try:
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "experiments", self.document)
            return "created"
        except ApiException as err:
            if err.status != 409:
                raise KatibStepError(self._failure("create", err)) from None
        existing = self.get()
        owner = ((existing.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)
        if owner != self.label:
            raise KatibStepError(f"cannot create {self}: 409 AlreadyExists, and it was not created by this pipeline "
                                 f"run (label {RUN_LABEL}={owner or 'absent'}); delete it or rename the example")
        return "adopted"

    # wait ----------------------------------------------------------------------------------------------
    def get_raw(self) -> dict[str, Any]:
        """The Experiment as the API returns it; the API's errors as they are."""
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "experiments", self.name)

    def get(self) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        try:
            return self.get_raw()
        except ApiException as err:
            raise KatibStepError(self._failure("get", err)) from None

    def wait(self, timeout_s: float, poll_s: float, clock: Callable[[], float] = time.monotonic,
             read_retry_s: float = READ_RETRY_S) -> Finished:
        """Poll until Succeeded or Failed; KatibStepError after `timeout_s`. Errors that pass (a busy or
        restarting API server, a dropped connection) are polled through for up to `read_retry_s` in a row,
        then Unreachable."""
        from kubernetes.client.rest import ApiException

        deadline = clock() + timeout_s
        while True:
            try:
                experiment = read_through(self.get_raw, clock, poll_s, read_retry_s)
            except ReadsKeptFailing as kept:
                what = self._failure("get", kept.error) if isinstance(kept.error, ApiException) else \
                    f"cannot get {self}: {type(kept.error).__name__}"
                raise Unreachable(f"{what}, for {read_retry_s / 60:g} minutes in a row; {self} is left as it is "
                                  "for a retried step to adopt") from None
            except ApiException as err:
                raise KatibStepError(self._failure("get", err)) from None
            finished = finished_condition(experiment)
            if finished is not None:
                return finished
            if clock() >= deadline:
                raise TimedOut(f"{self} did not finish within {timeout_s / 60:g} minutes (timeout_minutes)")
            time.sleep(poll_s)

    def failure_details(self, experiment: dict[str, Any]) -> str:
        """Why a failed Experiment failed, from its Suggestion and its first failed Trial (best effort)."""
        details = []
        suggestion = self._get_quietly("suggestions", self.name)
        message = _failed_message(suggestion)
        if message:
            details.append(f"suggestion: {message}")
        failed = ((experiment.get("status") or {}).get("failedTrialList") or [])[:1]
        for trial in failed:
            message = _failed_message(self._get_quietly("trials", trial))
            details.append(f"trial {trial}: {message or 'failed'}")
        return "; ".join(details)

    # clean up ------------------------------------------------------------------------------------------
    def delete(self) -> str:
        """Delete the Experiment (Katib deletes its Trials and Suggestion); a line saying what happened."""
        from kubernetes.client.rest import ApiException

        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "experiments", self.name,
                                                     propagation_policy="Foreground")
        except ApiException as err:
            if err.status == 404:
                return f"{self} was already gone"
            return f"could not delete {self}: " + self._failure("delete", err)
        return f"deleted {self}"

    # helpers -------------------------------------------------------------------------------------------
    def _get_quietly(self, plural: str, name: str) -> dict[str, Any]:
        """A Trial or the Suggestion as JSON through KatibClient; {} when it cannot be read."""
        from kubeflow.katib import KatibClient

        katib = KatibClient(client_configuration=self.api.api_client.configuration, namespace=self.namespace)
        read = {"trials": katib.get_trial, "suggestions": katib.get_suggestion}[plural]
        try:
            return katib.api_client.sanitize_for_serialization(read(name, self.namespace))
        except (RuntimeError, TimeoutError):
            return {}

    def _failure(self, action: str, err: Any) -> str:
        reason, message = api_reason(err)
        hint = {403: f"; {RBAC_HINT}",
                404: "; is Katib installed (the experiments.kubeflow.org resource) and the namespace right?"
                }.get(err.status, "") if action != "delete" else ""
        return f"cannot {action} {self}: {err.status} {reason}: {message}{hint}"


def finished_condition(experiment: dict[str, Any]) -> Finished | None:
    """Succeeded or Failed from the Experiment's conditions, None while it runs."""
    status = experiment.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Succeeded", "Failed") and str(condition.get("status")) == "True":
            return Finished(condition["type"], condition.get("message") or condition.get("reason") or "",
                            status.get("currentOptimalTrial") or {})
    return None


def _failed_message(resource: dict[str, Any]) -> str:
    for condition in reversed((resource.get("status") or {}).get("conditions") or []):
        if condition.get("type") == "Failed" and str(condition.get("status")) == "True":
            return condition.get("message") or condition.get("reason") or ""
    return ""


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise Stopped, so cleanup code runs before the step ends
    (in the main thread only, where Python delivers signals)."""
    def handler(signum: int, frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
