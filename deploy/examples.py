"""The shipped examples (katib_nas.examples), written out for a user's registry and namespace.

Experiments (examples/*.yaml) and what some examples need made first (examples/prepare/*.yaml: the Jobs
that make what the GPU examples mount, the TrainJob example's training runtime)
name the images of images.py (docker.io/katibnas/ROLE:VERSION) and the namespace `kubeflow`. `render` rewrites
both as text, so the comments stay, and checks the result: every image is one of ours from the new registry,
and every object (and every RoleBinding subject) is in the new namespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from katib_nas import examples
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import is_dns1123_label

from .images import REGISTRY, REGISTRY_PATTERN, ROLES, VERSION, VERSION_PATTERN, image

FOLDER = Path(examples.__file__).resolve().parent
PREPARE = "prepare"
NAMESPACE = "kubeflow"
_OUR_IMAGE = re.compile(re.escape(REGISTRY) + r"/(" + "|".join(map(re.escape, ROLES)) + r"):" + re.escape(VERSION))
_NAMESPACE_LINE = re.compile(r"^(\s*(?:- )?namespace: )" + NAMESPACE + r"\s*$", re.M)


@dataclass(frozen=True)
class Target:
    """Where the user's cluster takes its images from, and the namespace the objects go into."""

    registry: str = REGISTRY
    namespace: str = NAMESPACE
    version: str = VERSION

    def check(self) -> None:
        """InvalidInput naming the first value that cannot be a registry, version or namespace."""
        if not REGISTRY_PATTERN.fullmatch(self.registry):
            raise InvalidInput(f"--registry {self.registry[:80]!r} is not a registry: a host with an optional port and "
                               "path, no scheme, e.g. registry.example.com/katib-nas")
        if not VERSION_PATTERN.fullmatch(self.version):
            raise InvalidInput(f"--version {self.version[:80]!r} is not an image tag")
        if not is_dns1123_label(self.namespace):
            raise InvalidInput(f"--namespace {self.namespace[:80]!r} is not a Kubernetes namespace (lower case "
                               "letters, digits and '-', at most 63 characters)")


def catalogue(folder: Path = FOLDER) -> dict[str, Path]:
    """Every example by name: the Experiments, then what they need made first (as `prepare/NAME`)."""
    found = {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    found.update({f"{PREPARE}/{path.stem}": path for path in sorted((folder / PREPARE).glob("*.yaml"))})
    return found


def find(name: str, folder: Path = FOLDER) -> Path:
    """The example's file; InvalidInput listing the names there are."""
    known = catalogue(folder)
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    if stem not in known:
        raise InvalidInput(f"no example named {name[:80]!r}; examples: {', '.join(known) or 'none'} "
                           "(katib-nas example --list describes them)")
    return known[stem]


def summary(path: Path) -> str:
    """The example's first comment line, without the `#`."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def render(path: Path, target: Target) -> str:
    """The example's text for `target`: our images from its registry, its namespace everywhere."""
    target.check()
    text = _OUR_IMAGE.sub(lambda match: image(match.group(1), target.registry, target.version), path.read_text())
    text = _NAMESPACE_LINE.sub(lambda match: match.group(1) + target.namespace, text)
    check_rendered(text, target)
    return text


def check_rendered(text: str, target: Target) -> None:
    """Every image in the text is one of ours from the target registry; every namespace is the target's."""
    images = set(re.findall(r"^\s*image:\s*(\S+)\s*$", text, re.M))
    expected = {image(role, target.registry, target.version) for role in ROLES}
    if not images <= expected:
        raise InvalidInput(f"the example names images other than ours: {', '.join(sorted(images - expected))}")
    for document in yaml.safe_load_all(text):
        if not isinstance(document, dict):
            continue
        spaces = [(document.get("metadata") or {}).get("namespace")]
        spaces += [s.get("namespace") for s in document.get("subjects") or [] if s.get("kind") == "ServiceAccount"]
        if any(space != target.namespace for space in spaces):
            raise InvalidInput(f"{document.get('kind')} {(document.get('metadata') or {}).get('name')} is not in "
                               f"namespace {target.namespace} after rewriting")
