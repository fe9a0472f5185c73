"""`katib-nas register` against a Kubernetes API emulator holding each Katib v0.19.0 install variant's katib-config.

What a platform engineer relies on: our three entries are added and nothing else changes (stock suggestions,
collectors, early stopping, init settings); a second run writes nothing; --unregister gives back the original
text byte for byte; --dry-run writes nothing; every failure is one line and exit 1 or 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from katib_nas.cli.main import main
from katib_nas.deploy.images import SUGGESTION_IMAGE
from katib_nas.deploy.katib_config import (
    ALGORITHMS,
    DISTRIBUTED_TRIAL_KINDS,
    KATIB_DEFAULT_TRIAL_KINDS,
    SECURITY_CONTEXT,
    component_files,
    register,
    suggestion_entries,
    unregister,
    with_trial_kinds,
)
from katib_nas.suggestion.core.algorithms import ALGORITHMS as SERVED

from .conftest import KATIB_FIXTURES
from .kube_emulator import Cluster, start_cluster

VARIANTS = ("standalone", "cert-manager", "leader-election", "openshift")


def stock_text(variant: str) -> str:
    return (KATIB_FIXTURES / f"katib-config-v0.19.0-{variant}.yaml").read_text()


def without_ours(document: dict[str, Any]) -> dict[str, Any]:
    runtime = document["runtime"]
    kept = [s for s in runtime["suggestions"] if s["algorithmName"] not in ALGORITHMS]
    return {**document, "runtime": {**runtime, "suggestions": kept}}


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with start_cluster(tmp_path) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        yield running


def live_text(cluster: Cluster) -> str:
    return cluster.get("configmaps", "kubeflow", "katib-config")["data"]["katib-config.yaml"]


def writes(cluster: Cluster) -> int:
    """Requests other than GET the API received, to any resource."""
    return sum(1 for request in cluster.emulator if str(request.method.value).upper() != "GET")


def install_katib(cluster: Cluster, variant: str) -> str:
    text = stock_text(variant)
    cluster.put("configmaps", "kubeflow", "katib-config", {"data": {"katib-config.yaml": text}})
    return text


@pytest.mark.parametrize("variant", VARIANTS)
def test_register_adds_exactly_our_entries(cluster: Cluster, variant: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    original = install_katib(cluster, variant)
    assert main(["register"]) == 0
    assert capsys.readouterr().out.strip() == \
        "ConfigMap kubeflow/katib-config: added envelopenet, proxylessnas, nas-random"
    before, after = yaml.safe_load(original), yaml.safe_load(live_text(cluster))
    assert without_ours(after) == before  # stock suggestions, collectors, early stopping, init: all as they were
    ours = [s for s in after["runtime"]["suggestions"] if s["algorithmName"] in ALGORITHMS]
    assert ours == suggestion_entries() and sorted(ALGORITHMS) == sorted(SERVED)
    assert all(s["image"] == SUGGESTION_IMAGE and s["securityContext"] == SECURITY_CONTEXT for s in ours)
    assert live_text(cluster).startswith(original.split("  earlyStoppings:")[0])  # the text above ours is untouched


@pytest.mark.parametrize("variant", VARIANTS)
def test_register_twice_writes_nothing_and_unregister_restores_the_bytes(cluster: Cluster, variant: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    original = install_katib(cluster, variant)
    assert main(["register"]) == 0
    registered, written = live_text(cluster), writes(cluster)
    assert written > 0
    assert main(["register"]) == 0
    assert live_text(cluster) == registered and writes(cluster) == written
    assert main(["register", "--unregister"]) == 0
    assert live_text(cluster) == original
    assert main(["register", "--unregister"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["ConfigMap kubeflow/katib-config already as asked; nothing to change",
                       "ConfigMap kubeflow/katib-config: removed envelopenet, proxylessnas, nas-random",
                       "ConfigMap kubeflow/katib-config already as asked; nothing to change"]


def test_an_older_entry_of_ours_is_updated_in_place_not_duplicated(cluster: Cluster,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    install_katib(cluster, "standalone")
    assert main(["register", "--image", "registry.example.com/nas/suggestion:0.0.9"]) == 0
    assert main(["register"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        "ConfigMap kubeflow/katib-config: updated envelopenet, proxylessnas, nas-random"
    names = [s["algorithmName"] for s in yaml.safe_load(live_text(cluster))["runtime"]["suggestions"]]
    assert [n for n in names if n in ALGORITHMS] == list(ALGORITHMS)


def test_dry_run_prints_the_result_and_writes_nothing(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    original = install_katib(cluster, "cert-manager")
    assert main(["register", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out == register(original, suggestion_entries()).text
    assert "dry run: ConfigMap kubeflow/katib-config: added" in captured.err and "nothing was written" in captured.err
    assert live_text(cluster) == original and writes(cluster) == 0
    assert main(["register"]) == 0 and writes(cluster) > 0  # the same run without --dry-run does write


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_api_failures_are_one_line_with_the_api_reason(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    install_katib(cluster, "standalone")
    assert main(["register", "--namespace", "katib"]) == 1
    assert one_error_line(capsys).startswith("katib-nas register: error: cannot read ConfigMap katib/katib-config: "
                                             "404 ")
    cluster.refuse("patch", "configmaps", 403, "Forbidden",
                   'configmaps "katib-config" is forbidden: User "alice" cannot patch resource "configmaps"')
    assert main(["register"]) == 1
    line = one_error_line(capsys)
    assert line.startswith("katib-nas register: error: cannot update ConfigMap kubeflow/katib-config: 403 Forbidden:")
    assert 'User "alice" cannot patch' in line


def test_a_config_map_that_is_not_katibs_is_refused(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.put("configmaps", "kubeflow", "katib-config", {"data": {"katib-config.yaml": "runtime: [1, 2\n"}})
    assert main(["register"]) == 2
    assert "katib-config.yaml is not valid YAML at line" in one_error_line(capsys)
    cluster.put("configmaps", "kubeflow", "other", {"data": {"config": "x"}})
    assert main(["register", "--configmap", "other"]) == 1
    assert "has no katib-config.yaml key" in one_error_line(capsys)


def test_unreachable_api_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert main(["register"]) == 1
    assert "the Kubernetes API is unreachable" in one_error_line(capsys)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["register", "--context", "nowhere"]) == 2
    assert one_error_line(capsys).startswith("katib-nas register: error: cannot load the kubeconfig")
    # a kubeconfig named but missing is an error, not a silent fall-back to the pod's service account
    assert main(["register", "--kubeconfig", str(tmp_path / "typo")]) == 2
    assert one_error_line(capsys).startswith("katib-nas register: error: cannot load the kubeconfig")


def test_suggestions_that_are_not_a_list_are_refused_not_rewritten() -> None:
    from katib_nas.deploy.katib_config import KatibConfigError

    with pytest.raises(KatibConfigError):
        register("runtime:\n  suggestions:\n    random: {image: r}\n", suggestion_entries())


def test_duplicated_entries_of_ours_collapse_into_one() -> None:
    [entry, *_] = suggestion_entries()
    doubled = yaml.safe_dump({"runtime": {"suggestions": [entry, {"algorithmName": "random", "image": "r"}, entry]}})
    change = register(doubled, suggestion_entries())
    names = [s["algorithmName"] for s in yaml.safe_load(change.text)["runtime"]["suggestions"]]
    assert names == ["envelopenet", "random", "proxylessnas", "nas-random"]
    assert change.updated == ("envelopenet",) and change.changed


def test_text_edits_keep_comments_and_fall_back_for_unusual_shapes() -> None:
    commented = "# our cluster's Katib\nruntime:\n  suggestions:\n  # tuned for GPUs\n  - algorithmName: random\n" \
                "    image: random:1   # pinned\n  earlyStoppings: []\n"
    added = register(commented, suggestion_entries()).text
    assert added.startswith(commented.split("  earlyStoppings")[0]) and unregister(added).text == commented
    flow = "runtime: {suggestions: [{algorithmName: random, image: r}]}\n"
    merged = yaml.safe_load(register(flow, suggestion_entries()).text)
    assert [s["algorithmName"] for s in merged["runtime"]["suggestions"]] == ["random", *ALGORITHMS]
    empty = yaml.safe_load(register("apiVersion: config.kubeflow.org/v1beta1\nkind: KatibConfig\n",
                                    suggestion_entries()).text)
    assert [s["algorithmName"] for s in empty["runtime"]["suggestions"]] == list(ALGORITHMS)


def test_register_then_unregister_gives_back_a_text_without_a_final_newline_byte_for_byte() -> None:
    text = "runtime:\n  suggestions:\n    - algorithmName: random  # pinned\n      image: r"
    registered = register(text, suggestion_entries()).text
    assert "# pinned" in registered and not registered.endswith("\n")
    assert unregister(registered).text == text


def test_a_writer_that_came_first_is_kept_and_the_edit_made_again_on_its_text(cluster: Cluster) -> None:
    """The write names the version it read; on 409 (another writer was first) the text is read and edited
    again, so neither write is lost."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from katib_nas.deploy import cluster as deploy_cluster

    install_katib(cluster, "standalone")
    api = client.CoreV1Api(cluster.api_client())
    patches: list[dict[str, Any]] = []

    class FirstWriterWins:
        def __getattr__(self, name: str) -> Any:
            return getattr(api, name)

        def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
            patches.append(body)
            if len(patches) == 1:  # another writer changes the map between our read and our write
                other = live_text(cluster) + "# another writer\n"
                api.patch_namespaced_config_map(name, namespace, {"data": {"katib-config.yaml": other}})
                raise ApiException(status=409, reason="Conflict")
            return api.patch_namespaced_config_map(name, namespace, body, **kwargs)

    ref = deploy_cluster.ConfigMapRef(namespace="kubeflow", name="katib-config")
    read = api.read_namespaced_config_map("katib-config", "kubeflow").metadata.resource_version
    deploy_cluster.update_text(FirstWriterWins(), ref, lambda text: register(text, suggestion_entries()))
    assert len(patches) == 2 and patches[0]["metadata"]["resourceVersion"] == read
    final = live_text(cluster)
    assert "# another writer" in final and all(f"algorithmName: {name}" in final for name in ALGORITHMS)


# --- --trial-resources: the distributed examples' trial kinds ----------------------------------------------

def kinds_of(text: str) -> list[str]:
    return yaml.safe_load(text)["init"]["controller"]["trialResources"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_trial_resources_lists_the_missing_distributed_kinds_and_nothing_else(
        cluster: Cluster, variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Katib v0.19.0's standalone and cert-manager installs list TrainJob and PyTorchJob; the leader-election
    and openshift ones lack TrainJob, which is appended; the rest of the list and of the file stays."""
    original = install_katib(cluster, variant)
    before = kinds_of(original)
    missing = [k for k in DISTRIBUTED_TRIAL_KINDS if k not in before]
    assert (missing == []) == (variant in ("standalone", "cert-manager"))
    assert main(["register", "--trial-resources"]) == 0
    out = capsys.readouterr().out.strip()
    after = live_text(cluster)
    assert kinds_of(after) == before + missing
    assert ("listed TrainJob.v1alpha1.trainer.kubeflow.org in init.controller.trialResources (Katib watches them "
            "after: kubectl -n kubeflow rollout restart deployment katib-controller)" in out) == bool(missing)
    assert out.startswith("ConfigMap kubeflow/katib-config: added envelopenet, proxylessnas, nas-random")
    # the same text as registering alone, with one line per missing kind after the list's last item
    alone = register(original, suggestion_entries()).text.splitlines()
    assert [line for line in after.splitlines() if line not in alone] == [f"      - {k}" for k in missing]
    assert main(["register", "--trial-resources"]) == 0
    assert capsys.readouterr().out.strip() == "ConfigMap kubeflow/katib-config already as asked; nothing to change"
    assert main(["register", "--unregister"]) == 0
    assert kinds_of(live_text(cluster)) == before + missing  # other Experiments may use the kinds: they stay


def test_trial_resources_of_a_config_without_the_list_keep_katibs_default_kind() -> None:
    """An empty or absent list means Job only to Katib: Job stays listed before the added kinds."""
    for text in ("apiVersion: config.kubeflow.org/v1beta1\nkind: KatibConfig\n",
                 "init:\n  controller:\n    webhookPort: 8443\n    trialResources: []\n"):
        change = with_trial_kinds(text)
        assert kinds_of(change.text) == ["Job.v1.batch", *DISTRIBUTED_TRIAL_KINDS]
        assert change.listed_kinds == DISTRIBUTED_TRIAL_KINDS
    kept = yaml.safe_load(with_trial_kinds("init:\n  controller:\n    webhookPort: 8443\n").text)
    assert kept["init"]["controller"]["webhookPort"] == 8443


@pytest.mark.parametrize("text, message", [
    ("init:\n  controller:\n    trialResources: TrainJob\n", "init.controller.trialResources must be a list of "
                                                              "kind names"),
    ("init:\n  controller: [a]\n", "init.controller must be a mapping"),
    ("init: 3\n", "init must be a mapping"),
])
def test_trial_resources_of_another_shape_are_refused_not_rewritten(cluster: Cluster, text: str, message: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cluster.put("configmaps", "kubeflow", "katib-config", {"data": {"katib-config.yaml": text}})
    assert main(["register", "--trial-resources"]) == 2
    assert one_error_line(capsys) == f"katib-nas register: error: katib-config.yaml: {message}"
    assert live_text(cluster) == text and writes(cluster) == 0


def test_trial_resources_with_unregister_is_refused(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    text = stock_text("standalone")
    cluster.put("configmaps", "kubeflow", "katib-config", {"data": {"katib-config.yaml": text}})
    assert main(["register", "--trial-resources", "--unregister"]) == 2
    assert one_error_line(capsys) == "katib-nas register: error: --trial-resources adds trial kinds: not with --unregister"
    assert live_text(cluster) == text and writes(cluster) == 0


def test_component_with_trial_resources_holds_the_trial_kinds(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`register --component DIR --trial-resources` writes the component that lists the trial kinds (what it
    renders to: tests/test_manifests.py); without the option, the one that leaves trialResources alone."""
    assert main(["register", "--component", str(tmp_path / "with"), "--trial-resources"]) == 0
    assert "restart katib-controller" in capsys.readouterr().err
    assert main(["register", "--component", str(tmp_path / "without")]) == 0
    for folder, trial_kinds in (("with", True), ("without", False)):
        for name, text in component_files(SUGGESTION_IMAGE, trial_kinds).items():
            assert (tmp_path / folder / name).read_text() == text
    kustomization = yaml.safe_load((tmp_path / "with" / "kustomization.yaml").read_text())
    listed = [r["sourceValue"] for r in kustomization["replacements"] if "sourceValue" in r]
    assert listed == [*KATIB_DEFAULT_TRIAL_KINDS, *DISTRIBUTED_TRIAL_KINDS]


@pytest.mark.parametrize("image", ["bad image", "Registry.example.com/Nas/suggestion:1", "suggestion:", ""])
def test_an_image_that_is_not_a_reference_is_refused_before_anything_is_written(
        cluster: Cluster, tmp_path: Path, image: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Katib would start every suggestion pod of the algorithms with it and fail each Experiment later."""
    text = install_katib(cluster, "standalone")
    assert main(["register", "--image", image]) == 2
    assert one_error_line(capsys).startswith(f"katib-nas register: error: --image {image!r} is not an image reference")
    assert main(["register", "--image", image, "--component", str(tmp_path / "c")]) == 2
    assert live_text(cluster) == text and writes(cluster) == 0 and not (tmp_path / "c").exists()
