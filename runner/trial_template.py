"""Turn a trial's assignments into a local command, the way Katib turns them into a Job.

Rendering follows Katib's manifest generator: the trialSpec is one JSON text
in which every `${trialParameters.NAME}` is replaced by the plain text of the
assignment (or trial metadata) its trialParameter references; every
assignment must be referenced. The primary container's command and args are
then joined with spaces and split again with POSIX shell quoting, which is
what Katib's `sh -c` wrapper does for the StdOut and File collectors, so
`--architecture="${trialParameters.x}"` works as it does on a cluster. No
shell runs: operators, redirections and `$` expansions are refused.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .manifest import (
    META_INDEX_PATTERN,
    META_PATTERN,
    PARAM_PLACEHOLDER,
    ExperimentError,
    ExperimentSpec,
    TrialTemplate,
)
from .paths import check_trial_name, confined

#: Programs that run from the current environment rather than from PATH.
PYTHON_NAMES = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")
CLI_NAME = "katib-nas"
SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", "<", ">", ">>", "<<", "<<<", "(", ")", "2>&1", "1>&2"})


@dataclass(frozen=True)
class TrialCommand:
    """A runnable trial: argument list (program resolved), extra environment, the metrics file if any."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    metrics_file: str = ""


def render_trial_spec(template: TrialTemplate, trial_name: str, namespace: str,
                      assignments: Mapping[str, str]) -> dict[str, Any]:
    """The trialSpec with placeholders replaced; ExperimentError when an assignment is unreferenced."""
    text = json.dumps(template.spec, ensure_ascii=False, sort_keys=True)
    values: dict[str, str] = {}
    referenced = 0
    for parameter in template.parameters:
        meta = META_PATTERN.search(parameter.reference)
        if not meta:
            if parameter.reference not in assignments:
                raise ExperimentError(f"trialParameter {parameter.name!r} references {parameter.reference!r}, "
                                      f"but the suggestion assigned only {sorted(assignments)}")
            values[parameter.name] = assignments[parameter.reference]
            referenced += 1
            continue
        values[parameter.name] = _meta_value(meta.group(1), parameter.reference, template.spec, trial_name, namespace)
    if referenced != len(assignments):
        used = {p.reference for p in template.parameters}
        extra = sorted(set(assignments) - used)
        raise ExperimentError(f"the suggestion assigned {extra} but no spec.trialTemplate.trialParameters entry "
                              f"references {'it' if len(extra) == 1 else 'them'}; add a trialParameter with "
                              f"reference: {extra[0] if extra else '?'}")
    for name, value in values.items():
        text = text.replace(PARAM_PLACEHOLDER % name, value)
    try:
        return json.loads(text)
    except ValueError:
        raise ExperimentError(f"trial {trial_name}: an assigned value breaks the trial template "
                              f"(assignments {dict(assignments)})") from None


def _meta_value(key: str, reference: str, spec: dict[str, Any], trial_name: str, namespace: str) -> str:
    index = ""
    indexed = META_INDEX_PATTERN.fullmatch(key)
    if indexed:
        key, index = indexed.group(1), indexed.group(2)
    metadata = spec.get("metadata") or {}
    simple = {"Name": trial_name, "Namespace": namespace, "Kind": str(spec.get("kind", "")),
              "APIVersion": str(spec.get("apiVersion", ""))}
    if key in simple:
        return simple[key]
    source = {"Labels": metadata.get("labels") or {}, "Annotations": metadata.get("annotations") or {}}.get(key)
    if source is None or index not in source:
        raise ExperimentError(f"illegal reference of trial metadata: {reference}")
    return str(source[index])


def primary_container(trial_spec: dict[str, Any], primary_name: str) -> dict[str, Any]:
    """The container that runs the trial, from a batch/v1 Job trialSpec."""
    kind = f"{trial_spec.get('apiVersion')}/{trial_spec.get('kind')}"
    if kind != "batch/v1/Job":
        raise ExperimentError(f"trialSpec kind {kind} cannot run locally; the local runner runs batch/v1 Job "
                              "trial specs")
    pod = (((trial_spec.get("spec") or {}).get("template") or {}).get("spec") or {})
    for container in pod.get("containers") or []:
        if isinstance(container, dict) and container.get("name") == primary_name:
            return container
    raise ExperimentError(f"the trialSpec has no container named {primary_name!r} (primaryContainerName)")


def container_argv(container: dict[str, Any], primary_name: str) -> list[str]:
    """command + args, re-split as Katib's `sh -c` wrapper would split them, without running a shell."""
    command = [str(v) for v in container.get("command") or []]
    if not command:
        raise ExperimentError(f"container {primary_name!r} has no command; the local runner cannot read an "
                              "image's entrypoint, so write the command in the trialSpec")
    joined = " ".join(command + [str(v) for v in container.get("args") or []])
    if command[0] in ("sh", "bash") and len(command) > 1 and command[1] == "-c":
        raise ExperimentError(f"container {primary_name!r} runs a shell script ({command[0]} -c); the local runner "
                              "runs commands without a shell: write the program and its arguments as a list")
    try:
        tokens = shlex.split(joined)
    except ValueError as err:
        raise ExperimentError(f"container {primary_name!r} command cannot be split into arguments: {err}") from None
    for token in tokens:
        if token in SHELL_OPERATORS or "$" in token or "`" in token:
            raise ExperimentError(f"container {primary_name!r} command uses shell syntax {token!r}, which needs a "
                                  "shell; the local runner runs the program directly")
    return tokens


def container_env(container: dict[str, Any], primary_name: str) -> dict[str, str]:
    """Literal `env` values of the container; valueFrom cannot be resolved without a cluster."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = str(entry.get("name", ""))
        if "valueFrom" in entry:
            raise ExperimentError(f"container {primary_name!r} env {name} uses valueFrom, which needs a cluster; "
                                  "give it a literal value to run locally")
        env[name] = str(entry.get("value", ""))
    return env


def apply_overrides(argv: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """Replace `--flag=...` arguments whose flag matches an override's; append the others."""
    result = list(argv)
    for override in overrides:
        flag = override.split("=", 1)[0] if override.startswith("-") and "=" in override else None
        positions = [i for i, arg in enumerate(result) if flag and (arg == flag or arg.startswith(flag + "="))]
        if positions and flag:
            index = positions[0]
            takes_next = result[index] == flag and index + 1 < len(result)
            result[index:index + (2 if takes_next else 1)] = [override]
        else:
            result.append(override)
    return result


def resolve_program(argv: Sequence[str], search_path: str | None = None) -> list[str]:
    """The argument list with its program made runnable here; ExperimentError if it is not found."""
    program, rest = argv[0], list(argv[1:])
    if program == CLI_NAME:
        return [sys.executable, "-m", "katib_nas.cli"] + rest
    if program in PYTHON_NAMES:
        return [sys.executable] + rest
    if "/" in program:
        if os.access(program, os.X_OK) and Path(program).is_file():
            return [program] + rest
        raise ExperimentError(f"trial command {program!r} not found or not executable")
    found = shutil.which(program, path=search_path if search_path is not None else trial_path())
    if not found:
        raise ExperimentError(f"trial command {program!r} not found on PATH")
    return [found] + rest


def trial_path() -> str:
    """PATH for trials: the current environment's bin directory first, so its tools win."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def metrics_file_for(spec: ExperimentSpec, argv: list[str], trial_dir: Path) -> tuple[list[str], str]:
    """For the File collector: point the trial's metrics path argument at a file of its own.

    `trial_dir` is WORKDIR/trials/NAME; the file lies under TRIAL_DIR/metrics and must resolve inside the
    workdir (the runner removes a stale one before the trial starts)."""
    if spec.collector.kind != "File":
        return argv, ""
    path = spec.collector.path
    workdir = trial_dir.parent.parent
    local = str(confined(trial_dir / "metrics" / path.lstrip("/"), workdir, "the File collector's metrics file"))
    if not any(path in arg for arg in argv):
        raise ExperimentError(f"the File collector reads {path}, but the trial command does not mention that path; "
                              "pass it to the trial as an argument so each local trial can get a file of its own")
    return [arg.replace(path, local) for arg in argv], local


def build_command(spec: ExperimentSpec, trial_name: str, assignments: Mapping[str, str],
                  overrides: Sequence[str], trial_dir: Path) -> TrialCommand:
    """Everything needed to start one trial locally; the trial's name must be a DNS-1123 label (it names its
    folder under the workdir, as it names the trial's Job on a cluster)."""
    check_trial_name(trial_name)
    rendered = render_trial_spec(spec.template, trial_name, spec.namespace, assignments)
    container = primary_container(rendered, spec.template.primary_container)
    argv = apply_overrides(container_argv(container, spec.template.primary_container), overrides)
    argv, metrics_file = metrics_file_for(spec, argv, trial_dir)
    env = container_env(container, spec.template.primary_container)
    env["KATIB_TRIAL_NAME"] = trial_name
    return TrialCommand(tuple(resolve_program(argv)), env, metrics_file)


def check_runnable(spec: ExperimentSpec, overrides: Sequence[str], trial_dir: Path) -> TrialCommand:
    """Render the template with placeholder values, as Katib's webhook does, to catch errors before any trial."""
    dummy = {p.reference: "test-value" for p in spec.template.parameters if not META_PATTERN.search(p.reference)}
    return build_command(spec, f"{spec.name}-check", dummy, overrides, trial_dir)
