"""One image naming scheme, REGISTRY/ROLE:VERSION (katib_nas.deploy.images), wherever an image is named:
README and docs, Dockerfiles, examples, katib-config entries, the compiled pipeline and `make images`."""

from __future__ import annotations

import re

import yaml

from katib_nas.deploy.images import REGISTRY, ROLES, SUGGESTION_IMAGE, TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE, VERSION
from katib_nas.deploy.katib_config import suggestion_entries

from .conftest import REPO, trial_containers

#: Anything that looks like one of our images, in any spelling (another registry, name or tag included).
OURS = re.compile(r"[\w.<>${}()/-]*(?:katibnas|katib-nas)[\w.-]*/[\w.-]+:(?:\d|\$\()[\w.${}()-]*|"
                  r"[\w.<>${}()/-]*/katib-nas-(?:trial|suggestion)[\w.-]*(?::[\w.-]+)?")
PLACES = ["README.md", "docs/*.md", "examples/*.yaml", "examples/prepare/*.yaml", "manifests/*/*.yaml",
          "pipelines/nas_pipeline.yaml", "*/Dockerfile*", "runner/demo-experiment.yaml", "tests/data/*.yaml"]


def named_images() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pattern in PLACES:
        for path in sorted(REPO.glob(pattern)):
            names = {m.group(0).rstrip(".") for m in OURS.finditer(path.read_text())}
            if names:
                found[str(path.relative_to(REPO))] = names
    return found


def follows_the_scheme(name: str) -> bool:
    """One of our three names, or the same ROLE:VERSION under another registry (docs show how to move them)."""
    roles = "|".join(map(re.escape, ROLES))
    return bool(re.fullmatch(rf"[\w.-]+(?:/[\w.-]+)*/(?:{roles}):{re.escape(VERSION)}", name))


def test_every_named_image_follows_the_scheme() -> None:
    found = named_images()
    assert {path: {n for n in names if not follows_the_scheme(n)} for path, names in found.items()
            if not all(map(follows_the_scheme, names))} == {}
    defaults = {SUGGESTION_IMAGE, TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE}
    assert {path: names - defaults for path, names in found.items()
            if path.endswith(".yaml") or "Dockerfile" in path if names - defaults} == {}
    assert {"README.md", "docs/deploy.md", "examples/nas-random-fashion-mnist.yaml",
            "manifests/katib-config/suggestions.yaml", "pipelines/nas_pipeline.yaml", "suggestion/Dockerfile",
            "examples/prepare/cifar10-data.yaml", "examples/prepare/latency-table-cuda.yaml",
            "trial_image/Dockerfile", "trial_image/Dockerfile.cuda"} <= set(found)


def test_the_scheme_is_registry_role_version() -> None:
    assert {role: f"{REGISTRY}/{role}:{VERSION}" for role in ROLES} == {
        "suggestion": SUGGESTION_IMAGE, "trial-cpu": TRIAL_CPU_IMAGE, "trial-cuda": TRIAL_CUDA_IMAGE}
    assert all(entry["image"] == SUGGESTION_IMAGE for entry in suggestion_entries())


def test_make_images_builds_each_role_from_its_dockerfile() -> None:
    makefile = (REPO / "Makefile").read_text()
    for role, dockerfile in ROLES.items():
        assert f"docker build -f {dockerfile} -t $(REGISTRY)/{role}:$(VERSION) ." in makefile


def test_gpu_examples_use_the_cuda_image_and_cpu_examples_the_cpu_image() -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        containers = trial_containers(yaml.safe_load(path.read_text())["spec"]["trialTemplate"]["trialSpec"])
        for container in containers:
            gpu = any("gpu" in name for name in (container.get("resources") or {}).get("limits") or {})
            assert container["image"] == (TRIAL_CUDA_IMAGE if gpu else TRIAL_CPU_IMAGE), path.name
            assert path.stem.endswith("-gpu") == gpu


def test_the_package_version_is_the_image_tag() -> None:
    assert re.search(rf'^\s*version="{re.escape(VERSION)}",$', (REPO / "setup.py").read_text(), re.M)
