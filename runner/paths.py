"""Names and paths the runner writes under: Kubernetes' name rules, and confinement to a root folder.

Every file the runner writes or removes is named from the Experiment (its
metadata.name, trial names, the File collector's path). Names follow
Kubernetes' DNS-1123 label rule, which has no `/` or `..`, and a path built
from user text is resolved (symbolic links and `..` followed) and then
checked to lie inside the folder it belongs to.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import DNS1123_LABEL_MAX_LENGTH, is_dns1123_label

#: Katib's experiment names: a DNS-1123 label that starts with a letter, at most 40 characters
#: (Katib names the suggestion's Deployment and Service after it).
EXPERIMENT_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
EXPERIMENT_NAME_MAX_LENGTH = 40


class PathError(InvalidInput):
    """A name or path that would put a file outside the folder it belongs in."""


def is_experiment_name(name: str) -> bool:
    return len(name) <= EXPERIMENT_NAME_MAX_LENGTH and EXPERIMENT_NAME.fullmatch(name) is not None


def check_trial_name(name: str) -> str:
    """`name` when it is a DNS-1123 label (as a Kubernetes Job name must be); PathError otherwise."""
    if not is_dns1123_label(name):
        raise PathError(f"trial name {name[:80]!r} is not a Kubernetes DNS-1123 label (lower case letters, digits "
                        f"and '-', starting and ending with a letter or digit, at most {DNS1123_LABEL_MAX_LENGTH} "
                        "characters)")
    return name


def has_backsteps(path: str) -> bool:
    """True when a path has a `..` component, which Kubernetes refuses in a volume mount path."""
    return ".." in PurePosixPath(path).parts


def confined(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, when it lies inside `root` (resolved too); PathError naming `what` otherwise."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PathError(f"{what} {path} resolves to {resolved}, outside {root}; the runner writes only inside its "
                        "workdir")
    return resolved
