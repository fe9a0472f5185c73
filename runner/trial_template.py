"""Turn a trial's assignments into a local command, the way Katib turns them into a Job.

Rendering follows Katib's manifest generator: the trialSpec is one JSON text
in which every `${trialParameters.NAME}` is replaced by the plain text of the
assignment (or trial metadata) its trialParameter references; every
assignment must be referenced. The primary container's command and args are
then joined with spaces and split again with POSIX shell quoting, which is
what Katib's `sh -c` wrapper does for the StdOut and File collectors, so
`--architecture="${trialParameters.x}"` works as it does on a cluster. No
shell runs: operators, redirections and `$` expansions are refused. `--trial-arg`
values get the same placeholders, per trial, and also trial metadata
written directly (`--trial-arg=--export-dir=model/${trialSpec.Name}`); a katib-nas trial folder flag that
names no trial gets a folder of the trial's own (`own_folders`).

Besides batch/v1 Jobs the runner takes the distributed trial kinds of Katib's
default katib-config: a PyTorchJob (kubeflow.org/v1; the Master replica's
container, Master + Worker replicas as nodes, nprocPerNode processes each) and
a TrainJob (trainer.kubeflow.org/v1alpha1; spec.trainer's command, numNodes
and numProcPerNode). A command that starts with `torchrun` is run without
it, its own --nnodes and --nproc-per-node taking precedence. Every node is
emulated on this machine: nodes x processes copies of the program start
under katib_nas.runner.launch, which gives each torchrun's environment.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping, Sequence

from katib_nas.contract.metric_format import TRIAL_NAME_ENV

from .launch import MAX_LOCAL_PROCESSES, World
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
#: The placeholders a --trial-arg value may hold: a trialParameter, or trial metadata written directly.
OVERRIDE_PLACEHOLDER = re.compile(r"\$\{(trialParameters|trialSpec)\.([^}]*)\}")
SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", "<", ">", ">>", "<<", "<<<", "(", ")", "2>&1", "1>&2"})


@dataclass(frozen=True)
class TrialCommand:
    """A runnable trial: argument list (program resolved), extra environment, the metrics file if any."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    metrics_file: str = ""
    #: The folder flags given a folder of the trial's own: (flag, the command's value, the trial's folder).
    own_folders: tuple[tuple[str, str, str], ...] = ()


def render_trial_spec(template: TrialTemplate, trial_name: str, namespace: str,
                      assignments: Mapping[str, str]) -> dict[str, Any]:
    """The trialSpec with placeholders replaced; ExperimentError when an assignment is unreferenced."""
    text = json.dumps(template.spec, ensure_ascii=False, sort_keys=True)
    for name, value in trial_parameter_values(template, trial_name, namespace, assignments).items():
        text = text.replace(PARAM_PLACEHOLDER % name, value)
    try:
        return json.loads(text)
    except ValueError:
        raise ExperimentError(f"trial {trial_name}: an assigned value breaks the trial template "
                              f"(assignments {dict(assignments)})") from None


def trial_parameter_values(template: TrialTemplate, trial_name: str, namespace: str,
                           assignments: Mapping[str, str]) -> dict[str, str]:
    """The text each trialParameter stands for in this trial; ExperimentError when an assignment is
    unreferenced."""
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
    return values


def render_overrides(overrides: Sequence[str], template: TrialTemplate, trial_name: str, namespace: str,
                     values: Mapping[str, str]) -> list[str]:
    """--trial-arg values with their placeholders replaced for this trial: `${trialParameters.NAME}` as in the
    template (`values` from trial_parameter_values) and trial metadata written directly, such as
    `${trialSpec.Name}` (what a trialParameter's reference may name). An unknown one is an ExperimentError."""
    rendered = []
    for override in overrides:
        def value(match: re.Match[str], override: str = override) -> str:
            kind, key = match.groups()
            if kind == "trialParameters":
                if key not in values:
                    raise ExperimentError(f"--trial-arg {override!r} uses {match.group(0)}, but "
                                          f"spec.trialTemplate.trialParameters has no entry named {key!r}")
                return values[key]
            try:
                return _meta_value(key, match.group(0), template.spec, trial_name, namespace)
            except ExperimentError as err:
                raise ExperimentError(f"--trial-arg {override!r}: {err}") from None

        rendered.append(OVERRIDE_PLACEHOLDER.sub(value, override))
    return rendered


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


JOB = "batch/v1/Job"
PYTORCHJOB = "kubeflow.org/v1/PyTorchJob"
TRAINJOB = "trainer.kubeflow.org/v1alpha1/TrainJob"
#: The container a TrainJob's trainer runs in (the replicated job and container of Trainer's torch runtimes).
TRAINJOB_CONTAINER = "node"


@dataclass(frozen=True)
class Workload:
    """The primary container of a trial spec and how many nodes and processes per node it asks for."""

    container: dict[str, Any]
    world: World = World(1, 1)


def trial_workload(trial_spec: dict[str, Any], primary_name: str) -> Workload:
    """Container and process counts of a Job, PyTorchJob or TrainJob trial spec."""
    kind = f"{trial_spec.get('apiVersion')}/{trial_spec.get('kind')}"
    spec = trial_spec.get("spec") or {}
    if kind == JOB:
        return Workload(_named_container((spec.get("template") or {}).get("spec") or {}, primary_name))
    if kind == PYTORCHJOB:
        return _pytorchjob_workload(spec, primary_name)
    if kind == TRAINJOB:
        return _trainjob_workload(spec, primary_name)
    raise ExperimentError(f"trialSpec kind {kind} cannot run locally; the local runner runs {JOB}, {PYTORCHJOB} "
                          f"and {TRAINJOB} trial specs")


def _named_container(pod: dict[str, Any], primary_name: str) -> dict[str, Any]:
    for container in pod.get("containers") or []:
        if isinstance(container, dict) and container.get("name") == primary_name:
            return container
    raise ExperimentError(f"the trialSpec has no container named {primary_name!r} (primaryContainerName)")


def _pytorchjob_workload(spec: dict[str, Any], primary_name: str) -> Workload:
    """Master (the primary pod, as Katib labels it) and Worker replicas; nprocPerNode processes on each.
    A non-numeric nprocPerNode ("auto", the default) counts as one, as the operator counts it in WORLD_SIZE."""
    replicas = spec.get("pytorchReplicaSpecs") or {}
    master = replicas.get("Master")
    if not isinstance(master, dict):
        raise ExperimentError("the PyTorchJob trialSpec has no Master replica (spec.pytorchReplicaSpecs.Master); "
                              "Katib's primary pod is the master")
    nodes = sum(_count(r.get("replicas", 1), f"spec.pytorchReplicaSpecs.{name}.replicas", 0)
                for name, r in replicas.items() if isinstance(r, dict))
    per_node = str(spec.get("nprocPerNode", "auto"))
    procs = _count(int(per_node), "spec.nprocPerNode", 1) if per_node.isdigit() else 1
    pod = ((master.get("template") or {}).get("spec") or {})
    return Workload(_named_container(pod, primary_name), World(nodes, procs))


#: What Kubeflow Trainer's torch plugin sets in a TrainJob's trainer container and refuses in its trainer.env.
TORCHRUN_RESERVED_ENV = frozenset({"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR",
                                   "PET_MASTER_PORT"})


def _trainjob_workload(spec: dict[str, Any], primary_name: str) -> Workload:
    """spec.trainer as the container named `node`; numNodes (default 1) and numProcPerNode, which "auto" or
    "cpu" turns into the CPU count of resourcesPerNode (at least one), as Kubeflow Trainer's torch plugin does."""
    if primary_name != TRAINJOB_CONTAINER:
        raise ExperimentError(f"a TrainJob's trainer runs in the container named {TRAINJOB_CONTAINER!r}; set "
                              f"spec.trialTemplate.primaryContainerName: {TRAINJOB_CONTAINER}")
    trainer = spec.get("trainer") or {}
    if not trainer.get("command"):
        raise ExperimentError("the TrainJob trialSpec has no spec.trainer.command; the local runner cannot read the "
                              "runtime's image, so write the command in the TrainJob")
    reserved = sorted({str(e.get("name")) for e in trainer.get("env") or [] if isinstance(e, dict)}
                      & TORCHRUN_RESERVED_ENV)
    if reserved:
        raise ExperimentError(f"the TrainJob trialSpec's spec.trainer.env sets {', '.join(reserved)}, which Kubeflow "
                              "Trainer reserves for torchrun and refuses in a TrainJob")
    nodes = _count(trainer.get("numNodes", 1), "spec.trainer.numNodes", 1)
    per_node = trainer.get("numProcPerNode", "auto")
    if isinstance(per_node, int) and not isinstance(per_node, bool):
        procs = _count(per_node, "spec.trainer.numProcPerNode", 1)
    else:
        procs = max(1, _cpus(trainer.get("resourcesPerNode") or {}, "spec.trainer.resourcesPerNode"))
    container = {"name": TRAINJOB_CONTAINER, "command": trainer["command"], "args": trainer.get("args") or [],
                 "env": trainer.get("env") or []}
    return Workload(container, World(nodes, procs))


#: A Kubernetes resource quantity: a decimal number with an optional binary, decimal or exponent suffix.
QUANTITY = re.compile(r"\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                      r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?")
BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _cpus(resources: dict[str, Any], where: str) -> int:
    """Whole CPUs of the request (else the limit), as a Kubernetes quantity such as 2 or "1500m"."""
    if not isinstance(resources, dict):
        raise ExperimentError(f"the TrainJob trialSpec's {where} must be a mapping, got {resources!r}")
    for part in ("requests", "limits"):
        amounts = resources.get(part) or {}
        if not isinstance(amounts, dict):
            raise ExperimentError(f"the TrainJob trialSpec's {where}.{part} must be a mapping, got {amounts!r}")
        if amounts.get("cpu") not in (None, ""):
            return _cpus_rounded_up(amounts["cpu"], f"{where}.{part}.cpu")
    return 0


def _cpus_rounded_up(value: Any, where: str) -> int:
    """A Kubernetes quantity (2, "2.5", "1500m", "1e1") rounded up to a whole number, as Quantity.Value() rounds
    it for Kubeflow Trainer's torch plugin ("1500m" is 2 processes); ExperimentError naming `where`."""
    match = QUANTITY.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
    if match is None:
        raise ExperimentError(f"the TrainJob trialSpec's {where} must be a Kubernetes quantity such as 2 or 1500m, "
                              f"got {value!r}")
    number = Fraction(match.group("number"))
    if match.group("binary"):
        number *= BINARY[match.group("binary")]
    elif match.group("decimal") or match.group("exponent"):
        exponent = DECIMAL[match.group("decimal")] if match.group("decimal") else int(match.group("exponent"))
        if abs(exponent) > 100:
            raise ExperimentError(f"the TrainJob trialSpec's {where} is out of range, got {value!r}")
        number *= Fraction(10) ** exponent
    return math.ceil(number)


def _count(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_LOCAL_PROCESSES:
        raise ExperimentError(f"{where} must be a whole number in [{low}, {MAX_LOCAL_PROCESSES}] to run locally, "
                              f"got {value!r}")
    return value


TORCHRUN_VALUED = ("--nnodes", "--nproc-per-node", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--rdzv-conf",
                   "--max-restarts", "--monitor-interval", "--start-method", "--role", "--log-dir", "--redirects",
                   "--tee", "--local-ranks-filter", "--node-rank", "--master-addr", "--master-port", "--local-addr",
                   "--logs-specs", "--event-log-handler", "-r", "-t")
TORCHRUN_SWITCHES = ("--standalone", "--no-python", "--module", "--run-path", "-m")


def check_trainjob_launcher(trial_spec: Mapping[str, Any], argv: Sequence[str], world: World) -> None:
    """A TrainJob of several processes must start its command with torchrun: Kubeflow Trainer runs the command
    once per node and sets only the PET_* variables torchrun reads, so without it every node trains alone."""
    if trial_spec.get("kind") == "TrainJob" and world.size > 1 and not _starts_torchrun(argv):
        raise ExperimentError(f"the TrainJob asks for {world.nodes} node(s) x {world.per_node} process(es), but its "
                              "command does not start with torchrun: Kubeflow Trainer starts the command once per "
                              "node with only torchrun's PET_* variables, so every node would train alone; start it "
                              "as `torchrun --no-python katib-nas trial ...`")


def _starts_torchrun(argv: Sequence[str]) -> bool:
    return bool(argv) and Path(argv[0]).name == "torchrun"


def strip_torchrun(argv: Sequence[str], world: World) -> tuple[list[str], World]:
    """Without a leading `torchrun`, the argv and world as they are; with it, the program torchrun would start
    (a Python script runs under this Python unless --no-python) and the world its --nnodes and
    --nproc-per-node make of the spec's."""
    if not _starts_torchrun(argv):
        return list(argv), world
    options: dict[str, str] = {}
    index = 1
    while index < len(argv) and argv[index].startswith("-"):
        name, _, value = argv[index].partition("=")
        name = name.replace("_", "-") if name.startswith("--") else name
        if name in TORCHRUN_SWITCHES:
            options[name] = "yes"
        elif name in TORCHRUN_VALUED:
            if not value:
                index += 1
                value = argv[index] if index < len(argv) else ""
            options[name] = value
        else:
            raise ExperimentError(f"torchrun option {argv[index]!r} is not one the local runner knows; options: "
                                  f"{', '.join(TORCHRUN_VALUED + TORCHRUN_SWITCHES)}")
        index += 1
    program = list(argv[index:])
    if not program:
        raise ExperimentError("torchrun has no program to start in the trial command")
    if "-m" in options or "--module" in options:
        program = ["python", "-m"] + program
    elif "--no-python" not in options:
        program = ["python"] + program
    nodes = _torchrun_count(options.get("--nnodes"), "--nnodes", world.nodes)
    per_node = _torchrun_count(options.get("--nproc-per-node"), "--nproc-per-node", world.per_node)
    return program, World(nodes, per_node)


def _torchrun_count(text: str | None, flag: str, default: int) -> int:
    if text is None or text in ("auto", "cpu", "gpu"):
        return default
    if not text.isdigit():
        raise ExperimentError(f"torchrun {flag} {text!r}: the local runner takes a whole number here")
    return _count(int(text), f"torchrun {flag}", 1)


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


#: The trial flags that say where its data is (kept in the report's command that trains the best network).
DATA_FLAGS = ("--dataset", "--data-dir", "--val-fraction", "--split-seed")


def trial_flags(trial_spec: dict[str, Any], primary_name: str, names: Sequence[str],
                overrides: Sequence[str] = ()) -> dict[str, str] | None:
    """The values of the trial command's `names` flags (`--flag=value` or `--flag value`), split as Katib's
    `sh -c` wrapper splits the command, the run's overrides applied; None when the command cannot be read."""
    try:
        container = trial_workload(trial_spec, primary_name).container
        argv = shlex.split(" ".join(str(v) for v in (container.get("command") or []) + (container.get("args") or [])))
    except (ExperimentError, ValueError):
        return None
    return {flag: value for _, flag, value, _ in flag_values(apply_overrides(argv, overrides), names)}


def flag_values(argv: Sequence[str], names: Sequence[str]) -> Iterator[tuple[int, str, str, bool]]:
    """(position, flag, value, inline) of each `names` flag in argv: written `--flag=value` (inline, at
    `position`) or `--flag value` (the value at `position`)."""
    for index, arg in enumerate(argv):
        flag, sep, value = arg.partition("=")
        if flag in names and sep:
            yield index, flag, value, True
        elif flag in names and index + 1 < len(argv):
            yield index + 1, flag, argv[index + 1], False


def data_flags(trial_spec: dict[str, Any], primary_name: str, overrides: Sequence[str] = (),
               cwd: str = "") -> tuple[str, ...] | None:
    """The trial command's DATA_FLAGS as `--flag=value` (a relative --data-dir made absolute against `cwd`, where
    local trials ran); None when the command cannot be read."""
    found = trial_flags(trial_spec, primary_name, DATA_FLAGS, overrides)
    if found is None:
        return None
    if found.get("--data-dir") and cwd and not Path(found["--data-dir"]).is_absolute():
        found["--data-dir"] = str(Path(cwd) / found["--data-dir"])
    return tuple(f"{flag}={found[flag]}" for flag in DATA_FLAGS if flag in found)


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


#: The flags of `katib-nas trial` (and, --tfevent-dir, of `proxyless-search`) that name a folder the trial
#: writes. On a cluster each trial's pod has a file system of its own; here trials share one, and would replace
#: each other's export (whatever its score) and refuse each other's checkpoint.
TRIAL_FOLDER_FLAGS = ("--export-dir", "--checkpoint-dir", "--tfevent-dir")
OWN_FOLDERS = "files"


def own_folders(program: list[str], trial_name: str,
                trial_dir: Path) -> tuple[list[str], tuple[tuple[str, str, str], ...]]:
    """katib-nas's TRIAL_FOLDER_FLAGS whose folder does not name the trial moved to TRIAL_DIR/files/PATH (`..` and
    `.` dropped), as the trial's pod would have it to itself; an empty value (none) and another program's flags
    are left as they are. Returns the program and the moves: (flag, the command's value, the trial's folder)."""
    if not program or Path(program[0]).name != CLI_NAME:
        return program, ()
    names_trial = re.compile(rf"(?<![-a-z0-9]){re.escape(trial_name)}(?![-a-z0-9])")
    result, moved = list(program), []
    for position, flag, value, inline in flag_values(program, TRIAL_FOLDER_FLAGS):
        if not value or names_trial.search(value):
            continue
        parts = [part for part in PurePosixPath(value).parts if part not in ("/", ".", "..")]
        local = str(trial_dir.joinpath(OWN_FOLDERS, *parts))
        result[position] = f"{flag}={local}" if inline else local
        moved.append((flag, value, local))
    return result, tuple(moved)


def build_command(spec: ExperimentSpec, trial_name: str, assignments: Mapping[str, str],
                  overrides: Sequence[str], trial_dir: Path) -> TrialCommand:
    """Everything needed to start one trial locally; the trial's name must be a DNS-1123 label (it names its
    folder under the workdir, as it names the trial's Job on a cluster)."""
    check_trial_name(trial_name)
    rendered = render_trial_spec(spec.template, trial_name, spec.namespace, assignments)
    workload = trial_workload(rendered, spec.template.primary_container)
    values = trial_parameter_values(spec.template, trial_name, spec.namespace, assignments)
    overrides = render_overrides(overrides, spec.template, trial_name, spec.namespace, values)
    argv = apply_overrides(container_argv(workload.container, spec.template.primary_container), overrides)
    argv, metrics_file = metrics_file_for(spec, argv, trial_dir)
    env = container_env(workload.container, spec.template.primary_container)
    env[TRIAL_NAME_ENV] = trial_name
    check_trainjob_launcher(rendered, argv, workload.world)
    program, world = strip_torchrun(argv, workload.world)
    program, moved = own_folders(program, trial_name, trial_dir)
    if world.size > MAX_LOCAL_PROCESSES:
        raise ExperimentError(f"the trial asks for {world.nodes} node(s) x {world.per_node} process(es), more than "
                              f"the {MAX_LOCAL_PROCESSES} processes the local runner starts for one trial")
    resolved = resolve_program(program)
    if world.size > 1:
        resolved = [sys.executable, "-m", "katib_nas.runner.launch", f"--nnodes={world.nodes}",
                    f"--nproc-per-node={world.per_node}", "--", *resolved]
    return TrialCommand(tuple(resolved), env, metrics_file, moved)


def check_runnable(spec: ExperimentSpec, overrides: Sequence[str], trial_dir: Path) -> TrialCommand:
    """Render the template with placeholder values, as Katib's webhook does, to catch errors before any trial."""
    dummy = {p.reference: "test-value" for p in spec.template.parameters if not META_PATTERN.search(p.reference)}
    return build_command(spec, f"{spec.name}-check", dummy, overrides, trial_dir)
