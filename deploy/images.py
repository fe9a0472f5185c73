"""The one image naming scheme: REGISTRY/ROLE:VERSION, e.g. docker.io/katibnas/trial-cpu:0.1.0.

README, docs, Dockerfiles (`make images`), examples, katib-config entries and the pipeline all use these
names; tests/test_images.py checks every place that names an image.
"""

from __future__ import annotations

REGISTRY = "docker.io/katibnas"
VERSION = "0.1.0"
#: role -> the Dockerfile that builds it, relative to the repository root
ROLES = {
    "suggestion": "suggestion/Dockerfile",
    "trial-cpu": "trial_image/Dockerfile",
    "trial-cuda": "trial_image/Dockerfile.cuda",
}


def image(role: str, registry: str = REGISTRY, version: str = VERSION) -> str:
    """The image name of a role (suggestion, trial-cpu, trial-cuda)."""
    if role not in ROLES:
        raise ValueError(f"unknown image role {role!r}; roles: {', '.join(ROLES)}")
    return f"{registry.rstrip('/')}/{role}:{version}"


SUGGESTION_IMAGE = image("suggestion")
TRIAL_CPU_IMAGE = image("trial-cpu")
TRIAL_CUDA_IMAGE = image("trial-cuda")
