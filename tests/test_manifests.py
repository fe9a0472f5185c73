"""manifests/ rendered with `kubectl kustomize`, as `kubectl apply -k manifests/` would send it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from katib_nas.suggestion.core.algorithms import ALGORITHMS

from .conftest import KATIB_FIXTURES, REPO

SUGGESTION_IMAGE = "docker.io/katibnas/suggestion:0.1.0"
# Katib's defaults for a suggestion container (pkg/apis/config/v1beta1/defaults.go).
KATIB_DEFAULT_LIMITS = {"cpu": 0.5, "memory": 100 * 2**20}
# The suggestion service's resident memory at start and after 1,000 GetSuggestions calls (BENCHMARKS.md).
RSS_AT_START = 50 * 2**20
RSS_AFTER_1000_CALLS = 58 * 2**20
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}


def kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("kubectl not found; `make kubectl` installs it")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def quantity(text: str) -> float:
    for suffix, factor in UNITS.items():
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents}


def katib_config(documents: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = by_kind(documents)["ConfigMap"]
    return yaml.safe_load(config_map["data"]["katib-config.yaml"])


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(REPO / "manifests")


def test_renders_katib_config_and_least_privilege_rbac(rendered: list[dict[str, Any]]) -> None:
    assert sorted(d["kind"] for d in rendered) == ["ConfigMap", "Role", "RoleBinding", "ServiceAccount"]
    assert {d["metadata"]["namespace"] for d in rendered} == {"kubeflow"}
    config_map = by_kind(rendered)["ConfigMap"]
    assert config_map["metadata"]["name"] == "katib-config"  # no hash suffix: Katib reads this exact name
    assert list(config_map["data"]) == ["katib-config.yaml"]


def test_every_registered_algorithm_uses_our_image_within_katib_defaults(rendered: list[dict[str, Any]]) -> None:
    suggestions = {s["algorithmName"]: s for s in katib_config(rendered)["runtime"]["suggestions"]}
    ours = {name: s for name, s in suggestions.items() if s["image"] == SUGGESTION_IMAGE}
    assert sorted(ours) == sorted(ALGORITHMS)
    for name, entry in ours.items():
        limits, requests = entry["resources"]["limits"], entry["resources"]["requests"]
        for resource, default in KATIB_DEFAULT_LIMITS.items():
            assert quantity(limits[resource]) <= default, (name, resource)
        assert RSS_AT_START <= quantity(requests["memory"]), name  # the scheduler reserves what it uses
        assert RSS_AFTER_1000_CALLS < quantity(limits["memory"]), name
        assert quantity(requests["cpu"]) <= quantity(limits["cpu"])
        assert "serviceAccountName" not in entry  # the suggestion calls no Kubernetes API


def without_image_tags(value: Any) -> Any:
    """The config with every Katib image's tag removed (the shipped file follows Katib's development branch)."""
    text = yaml.safe_dump(value)
    return yaml.safe_load(re.sub(r"(ghcr\.io/kubeflow/katib/[\w.-]+):[\w.-]+", r"\1", text))


def test_katib_stock_config_is_kept_entry_for_entry(rendered: list[dict[str, Any]]) -> None:
    stock = without_image_tags(yaml.safe_load((KATIB_FIXTURES / "katib-config-v0.19.0-standalone.yaml").read_text()))
    config = without_image_tags(katib_config(rendered))
    assert config["init"] == stock["init"]
    assert config["runtime"]["metricsCollectors"] == stock["runtime"]["metricsCollectors"]
    assert config["runtime"]["earlyStoppings"] == stock["runtime"]["earlyStoppings"]
    ours = len(ALGORITHMS)
    assert config["runtime"]["suggestions"][:-ours] == stock["runtime"]["suggestions"]
    assert {"apiVersion", "kind"} <= set(config) and config["kind"] == stock["kind"] == "KatibConfig"


def test_role_grants_only_what_the_search_step_uses(rendered: list[dict[str, Any]]) -> None:
    kinds = by_kind(rendered)
    verbs = {resource: set(rule["verbs"]) for rule in kinds["Role"]["rules"] for resource in rule["resources"]}
    assert {g for rule in kinds["Role"]["rules"] for g in rule["apiGroups"]} == {"kubeflow.org"}
    assert verbs == {"experiments": {"create", "get", "list", "watch"}, "trials": {"get", "list", "watch"},
                     "suggestions": {"get", "list", "watch"}}
    binding = kinds["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": kinds["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": kinds["ServiceAccount"]["metadata"]["name"],
                                    "namespace": "kubeflow"}]


def test_documented_override_replaces_the_config(tmp_path: Path) -> None:
    """The README's overlay: another image and more memory, by replacing katib-config.yaml."""
    text = (REPO / "manifests" / "katib-config.yaml").read_text()
    text = text.replace(SUGGESTION_IMAGE, "registry.example.com/nas/suggestion:1.2").replace("memory: 100Mi",
                                                                                              "memory: 256Mi")
    (tmp_path / "katib-config.yaml").write_text(text)
    base = os.path.relpath(REPO / "manifests", tmp_path)  # kustomize takes bases as relative paths
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [base],
        "configMapGenerator": [{"name": "katib-config", "behavior": "replace", "files": ["katib-config.yaml"]}],
    }))
    suggestions = {s["algorithmName"]: s for s in katib_config(render(tmp_path))["runtime"]["suggestions"]}
    for name in ALGORITHMS:
        assert suggestions[name]["image"] == "registry.example.com/nas/suggestion:1.2"
        assert suggestions[name]["resources"]["limits"]["memory"] == "256Mi"
