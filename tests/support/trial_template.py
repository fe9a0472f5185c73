"""A trialTemplate rendered as Katib renders it for one trial: the trialSpec and the primary container's
command."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from ..conftest import trial_containers

META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[.+\])\}$")


def rendered_trial_spec(document: dict[str, Any], assignments: dict[str, str], trial: str) -> dict[str, Any]:
    """Katib's substitution: plain text over the trialSpec."""
    template = document["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for parameter in template["trialParameters"]:
        meta = META_REFERENCE.match(parameter["reference"])
        value = trial if meta and meta.group(1) == "Name" else assignments[parameter["reference"]]
        text = text.replace("${trialParameters.%s}" % parameter["name"], value)
    return json.loads(text)


def rendered_command(document: dict[str, Any], assignments: dict[str, str], trial: str) -> tuple[str, list[str]]:
    """Katib's substitution, then the primary container as its shell runs it."""
    template = document["spec"]["trialTemplate"]
    containers = trial_containers(rendered_trial_spec(document, assignments, trial))
    container = next(c for c in containers if c["name"] == template["primaryContainerName"])
    argv = shlex.split(" ".join((container.get("command") or []) + (container.get("args") or [])))
    if argv[:2] == ["torchrun", "--no-python"]:  # torchrun starts the program as it is, once per process
        argv = argv[2:]
    return container["image"], argv  # the StdOut collector runs the command with sh -c
