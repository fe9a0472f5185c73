"""A Katib Experiment on a cluster as report input, so `katib-nas report --experiment` writes the same report as
a local run (runner/report.py).

The Experiment and its Trials (label katib.kubeflow.org/experiment=NAME) are read through the Kubernetes API,
whose refusals name their reason (404 NotFound, 403 Forbidden) in one line. Trials carry Katib's observation
(min, max and latest of each metric); the values of every epoch live only in Katib's database, which Katib's
SDK reads from its DB manager (KatibClient.get_trial_metrics). With a DB manager address the report has
every trial's per-epoch curve; without one, or when it does not answer, the report says so and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from katib_nas.contract.errors import InvalidInput
from katib_nas.deploy.cluster import ClusterError, api_reason, load_credentials
from katib_nas.runner.manifest import objective_from_document
from katib_nas.runner.metrics_collector import MetricLog, MetricSummary
from katib_nas.runner.report import ReportInput
from katib_nas.runner.store import TrialRow
from katib_nas.runner.trial_template import data_flags

GROUP, VERSION = "kubeflow.org", "v1beta1"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
#: Seconds one API request may take (an unreachable API server must not hang the command).
REQUEST_TIMEOUT = 30
#: Seconds the DB manager may take for one trial's logs.
DB_MANAGER_TIMEOUT = 10
PORT_FORWARD = "kubectl -n kubeflow port-forward svc/katib-db-manager 6789 and pass --db-manager localhost:6789"


@dataclass(frozen=True)
class ClusterExperiment:
    """Which Experiment to read, and where Katib's DB manager answers ("" for none)."""

    name: str
    namespace: str
    db_manager: str = ""


def custom_objects_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A CustomObjectsApi with the kubeconfig's credentials (or the pod's service account)."""
    from kubernetes import client

    load_credentials(kubeconfig, context)
    return client.CustomObjectsApi()


def read_experiment(api: Any, target: ClusterExperiment) -> ReportInput:
    """The Experiment, its Trials and (with a DB manager) their metric logs, as report input."""
    where = f"Katib Experiment {target.namespace}/{target.name}"
    experiment = _call(lambda: api.get_namespaced_custom_object(
        GROUP, VERSION, target.namespace, "experiments", target.name, _request_timeout=REQUEST_TIMEOUT),
        f"read {where}", target)
    listed = _call(lambda: api.list_namespaced_custom_object(
        GROUP, VERSION, target.namespace, "trials", label_selector=f"{EXPERIMENT_LABEL}={target.name}",
        _request_timeout=REQUEST_TIMEOUT), f"list the Trials of {where}", target)
    trials = trial_rows(listed.get("items") or [])
    objective = objective_from_document(experiment)
    condition, reason = current_condition(experiment)
    logs, notes = metric_logs(api, target, [t.name for t in trials])
    algorithm = ((experiment.get("spec") or {}).get("algorithm") or {}).get("algorithmName", "")
    template = (experiment.get("spec") or {}).get("trialTemplate") or {}
    flags = data_flags(template.get("trialSpec") or {}, str(template.get("primaryContainerName", "")))
    return ReportInput(target.name, algorithm, objective, condition, reason, trials, logs, where, notes, flags)


def trial_rows(items: list[dict[str, Any]]) -> list[TrialRow]:
    """Katib Trial objects as report rows, in creation order (numbered from 1)."""
    def created(item: dict[str, Any]) -> tuple[str, str]:
        metadata = item.get("metadata") or {}
        return metadata.get("creationTimestamp") or "", metadata.get("name") or ""

    return [trial_row(item, seq) for seq, item in enumerate(sorted(items, key=created), start=1)]


def trial_row(item: dict[str, Any], seq: int) -> TrialRow:
    metadata, spec, status = (item.get(key) or {} for key in ("metadata", "spec", "status"))
    assignments = {a["name"]: str(a.get("value", "")) for a in spec.get("parameterAssignments") or []}
    observation = {m["name"]: MetricSummary(m["name"], *(str(m.get(k, "unavailable")) for k in ("min", "max", "latest")))
                   for m in (status.get("observation") or {}).get("metrics") or []}
    condition, message = current_condition(item)
    return TrialRow(metadata.get("name", ""), seq, condition, assignments, dict(metadata.get("labels") or {}),
                    _seconds(metadata.get("creationTimestamp")) or 0.0, _seconds(status.get("startTime")),
                    _seconds(status.get("completionTime")), None, message, 0, observation)


def current_condition(item: dict[str, Any]) -> tuple[str, str]:
    """The last condition whose status is True (Katib appends them as an object moves on), with its reason or
    message; ("Created", "") before any."""
    for condition in reversed((item.get("status") or {}).get("conditions") or []):
        if str(condition.get("status")) == "True":
            return condition.get("type", ""), condition.get("message") or condition.get("reason") or ""
    return "Created", ""


def metric_logs(api: Any, target: ClusterExperiment, trials: list[str]
                ) -> tuple[dict[str, list[MetricLog]], tuple[str, ...]]:
    """Each trial's metric logs from Katib's DB manager, and a note when there are none to be had."""
    if not target.db_manager:
        return {}, (f"Per-epoch curves come from Katib's DB manager: {PORT_FORWARD}.",)
    from kubeflow.katib import KatibClient

    katib = KatibClient(client_configuration=api.api_client.configuration, namespace=target.namespace)
    logs: dict[str, list[MetricLog]] = {}
    for name in trials:
        try:
            found = katib.get_trial_metrics(name, target.namespace, db_manager_address=target.db_manager,
                                            timeout=DB_MANAGER_TIMEOUT)
        except RuntimeError as err:
            reason = " ".join(str(err).split())[:200]
            return logs, (f"Katib's DB manager at {target.db_manager} did not answer ({reason}); per-epoch curves "
                          f"are missing.",)
        logs[name] = [MetricLog(log.time_stamp, log.metric.name, log.metric.value) for log in found]
    return logs, ()


def _call(request: Callable[[], Any], action: str, target: ClusterExperiment) -> Any:
    """The API's answer, or one ClusterError line: the action, the status and the API server's reason."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiException as err:
        reason, message = api_reason(err)
        hint = {404: f"; `kubectl get experiments -n {target.namespace}` lists the Experiments there",
                403: f"; reading needs get on experiments and list on trials in namespace {target.namespace}"
                }.get(err.status, "")
        raise ClusterError(f"cannot {action}: {err.status} {reason}: {message}{hint}") from None
    except (HTTPError, OSError) as err:
        detail = " ".join(str(err).split())[:300]
        raise ClusterError(f"cannot {action}: the Kubernetes API server is unreachable ({detail})") from None


def _seconds(text: str | None) -> float | None:
    """An RFC 3339 time as Unix seconds (None for none or an unreadable one)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_names(target: ClusterExperiment) -> None:
    """InvalidInput unless the name and namespace can name Kubernetes objects at all."""
    from katib_nas.contract.kubernetes_names import is_dns1123_label

    for label, value in (("--experiment", target.name), ("--namespace", target.namespace)):
        if not is_dns1123_label(value):
            raise InvalidInput(f"{label} {value[:80]!r} is not a Kubernetes name (lower case letters, digits and "
                               "'-', at most 63 characters)")
