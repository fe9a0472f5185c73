"""manifests/ rendered with `kubectl kustomize`, and the pipeline's Role checked against the requests a step sends
to the Kubernetes API emulator."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import yaml
from kubernetes import client as k8s

from ..conftest import REPO
from ..kube_emulator import Cluster, kubectl


def render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


#: The User-Agent of the clients with which a test plays Katib's controller or Kubeflow Trainer: their requests to
#: the emulator are the test's, not the step's.
PLAYER_AGENT = "katib-nas-tests/played-controller"


class ApiRequest(NamedTuple):
    """A request as Kubernetes' authorizer sees it: verb, API group, resource (with its subresource), namespace."""

    verb: str
    group: str
    resource: str
    namespace: str | None


def player_api(cluster: Cluster) -> k8s.CustomObjectsApi:
    """A client for the part a test plays; its requests are left out of `step_requests`."""
    api_client = cluster.api_client()
    api_client.user_agent = PLAYER_AGENT
    return k8s.CustomObjectsApi(api_client)


def step_requests(cluster: Cluster) -> list[ApiRequest]:
    """Every request the emulator received from anyone but the test's players, with the verb Kubernetes' request
    attributes give it (GET of one object is get, of a collection list, with watch=true watch; DELETE of a
    collection deletecollection). A request outside the resource API keeps its path as the resource."""
    found = []
    for request in cluster.emulator:
        if {k.lower(): v for k, v in request.headers.items()}.get("user-agent") == PLAYER_AGENT:
            continue
        method = str(request.method.value).upper()
        if request.resource is None:
            found.append(ApiRequest(method.lower(), "", request.url.path, None))
            continue
        named = request.name is not None
        if method in ("GET", "HEAD"):
            verb = "watch" if request.params.get("watch") in ("true", "1") else "get" if named else "list"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if named else "deletecollection"}.get(method, method.lower())
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        found.append(ApiRequest(verb, request.resource.group, resource, request.namespace))
    return found


def pipeline_role() -> dict[str, Any]:
    """The Role of manifests/pipeline-rbac as `kubectl apply -k` would create it."""
    [role] = [doc for doc in render(REPO / "manifests" / "pipeline-rbac") if doc["kind"] == "Role"]
    return role


def role_refusals(role: dict[str, Any], requests: Iterable[ApiRequest]) -> list[str]:
    """The requests `role` does not allow, one line each; a Role allows only namespaced resource requests."""
    def allows(rule: dict[str, Any], request: ApiRequest) -> bool:
        return (request.namespace is not None and not rule.get("resourceNames")
                and bool({request.group, "*"} & set(rule.get("apiGroups") or []))
                and bool({request.resource, "*"} & set(rule.get("resources") or []))
                and bool({request.verb, "*"} & set(rule.get("verbs") or [])))

    return sorted({f"{r.verb} {r.resource}.{r.group} in {r.namespace or 'no namespace'}" for r in requests
                   if not any(allows(rule, r) for rule in role["rules"])})


def role_grants(role: dict[str, Any], group: str) -> set[tuple[str, str]]:
    """(verb, resource) pairs `role` grants in API group `group`."""
    return {(verb, resource) for rule in role["rules"] if group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}
