"""The one image naming scheme: REGISTRY/ROLE:VERSION, e.g. docker.io/katibnas/trial-cpu:0.1.0.

README, docs, Dockerfiles (`make images`), examples, katib-config entries and the pipeline all use these
names; tests/test_images.py checks every place that names an image.
"""

from __future__ import annotations

import re

REGISTRY = "docker.io/katibnas"
VERSION = "0.1.0"
#: role -> the Dockerfile that builds it, relative to the repository root
ROLES = {
    "suggestion": "suggestion/Dockerfile",
    "trial-cpu": "trial_image/Dockerfile",
    "trial-cuda": "trial_image/Dockerfile.cuda",
}


#: A registry as image names start: a host (with an optional port) and optional path components.
REGISTRY_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*")
#: An image tag.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: A whole image reference: a registry and path, then a tag, a digest or both.
IMAGE_PATTERN = re.compile(rf"(?:{REGISTRY_PATTERN.pattern})(?::{VERSION_PATTERN.pattern})?(?:@sha256:[0-9a-f]{{64}})?")


def image(role: str, registry: str = REGISTRY, version: str = VERSION) -> str:
    """The image name of a role (suggestion, trial-cpu, trial-cuda)."""
    if role not in ROLES:
        raise ValueError(f"unknown image role {role!r}; roles: {', '.join(ROLES)}")
    return f"{registry.rstrip('/')}/{role}:{version}"


SUGGESTION_IMAGE = image("suggestion")
TRIAL_CPU_IMAGE = image("trial-cpu")
TRIAL_CUDA_IMAGE = image("trial-cuda")
