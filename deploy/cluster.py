"""Reading and writing Katib's katib-config ConfigMap through the Kubernetes API (kubernetes client).

Credentials come from the kubeconfig (KUBECONFIG, else ~/.kube/config; `--context` picks a context) or,
inside a pod, from its service account. Every API failure becomes one ClusterError line naming the object
and the API server's reason; a write that races another writer (409 Conflict on the resourceVersion) is
retried on a fresh read. The write is a patch of the one data key, conditional on the resourceVersion read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from katib_nas.contract.errors import InvalidInput

from .katib_config import CONFIG_KEY, CONFIGMAP, KATIB_NAMESPACE, Change

FIELD_MANAGER = "katib-nas"
WRITE_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The Kubernetes API refused or could not be reached; the message is one line for the user."""


@dataclass(frozen=True)
class ConfigMapRef:
    namespace: str = KATIB_NAMESPACE
    name: str = CONFIGMAP

    def __str__(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> None:
    """Configure the kubernetes client from the kubeconfig, or from the pod's service account without one."""
    from kubernetes import config

    try:
        config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context)
    except (config.ConfigException, OSError) as kube_error:
        if kubeconfig or context:
            raise InvalidInput(f"cannot load the kubeconfig: {_one_line(kube_error)}") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise InvalidInput(f"no Kubernetes credentials: {_one_line(kube_error)}; set KUBECONFIG or pass "
                               "--kubeconfig") from None


def core_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A CoreV1Api with the credentials of `load_credentials`."""
    from kubernetes import client

    load_credentials(kubeconfig, context)
    return client.CoreV1Api()


def read_text(api: Any, ref: ConfigMapRef) -> str:
    """The katib-config.yaml text of the ConfigMap."""
    config_map = _call(lambda: api.read_namespaced_config_map(ref.name, ref.namespace), f"read {ref}", ref)
    text = (config_map.data or {}).get(CONFIG_KEY)
    if text is None:
        raise ClusterError(f"{ref} has no {CONFIG_KEY} key: it is not Katib's configuration")
    return text


def update_text(api: Any, ref: ConfigMapRef, edit: Callable[[str], Change]) -> Change:
    """Read the text, apply `edit`, write it back when it changed; retried when another writer was first."""
    from kubernetes.client.rest import ApiException

    for attempt in range(1, WRITE_ATTEMPTS + 1):
        config_map = _call(lambda: api.read_namespaced_config_map(ref.name, ref.namespace), f"read {ref}", ref)
        text = (config_map.data or {}).get(CONFIG_KEY)
        if text is None:
            raise ClusterError(f"{ref} has no {CONFIG_KEY} key: it is not Katib's configuration")
        change = edit(text)
        if not change.changed:
            return change
        patch = {"metadata": {"resourceVersion": config_map.metadata.resource_version},
                 "data": {CONFIG_KEY: change.text}}
        try:
            api.patch_namespaced_config_map(ref.name, ref.namespace, patch, field_manager=FIELD_MANAGER)
            return change
        except ApiException as err:
            if err.status != 409 or attempt == WRITE_ATTEMPTS:
                raise ClusterError(api_failure(f"update {ref}", err, ref)) from None
    raise AssertionError("unreachable")


def write_config_map(api: Any, ref: ConfigMapRef, key: str, text: str) -> str:
    """Create the ConfigMap holding `key`, or set that key in the one already there; "created" or "updated"."""
    from kubernetes.client.rest import ApiException

    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ref.name, "namespace": ref.namespace},
            "data": {key: text}}
    try:
        api.create_namespaced_config_map(ref.namespace, body, field_manager=FIELD_MANAGER)
        return "created"
    except ApiException as err:
        if err.status != 409:
            raise ClusterError(api_failure(f"create {ref}", err)) from None
    _call(lambda: api.patch_namespaced_config_map(ref.name, ref.namespace, {"data": {key: text}},
                                                  field_manager=FIELD_MANAGER), f"update {ref}", ref)
    return "updated"


def _call(request: Callable[[], Any], action: str, ref: ConfigMapRef) -> Any:
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except ApiException as err:
        raise ClusterError(api_failure(action, err, ref)) from None
    except (HTTPError, OSError) as err:
        raise ClusterError(f"cannot {action}: the Kubernetes API is unreachable ({_one_line(err)})") from None


def api_failure(action: str, err: Any, ref: ConfigMapRef | None = None) -> str:
    """One line for a failed API call: what was tried, the HTTP status, the API server's reason and message."""
    reason, message = api_reason(err)
    hint = ""
    if err.status == 404 and ref is not None:
        hint = f"; is Katib installed in namespace {ref.namespace}? (--namespace)"
    elif err.status == 403:
        hint = "; the account needs get and patch on this ConfigMap"
    return f"cannot {action}: {err.status} {reason}: {message}{hint}"


def api_reason(err: Any) -> tuple[str, str]:
    """(reason, message) from the Status body the API server sends with an error."""
    try:
        status = json.loads(err.body or "{}")
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = status.get("reason") or getattr(err, "reason", "") or "error"
    message = status.get("message") or (err.body or "").strip() or "no message"
    return _one_line(reason), _one_line(message)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:400]
