"""The Experiment a pipeline's search step runs: an example YAML plus the pipeline's parameters.

Everything here is plain Python (yaml, the algorithm registry, the local runner's Katib-webhook
checks), so a bad parameter is refused before anything reaches a cluster: an unknown algorithm or a
missing example is an InvalidInput whose one line names the alternatives.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from katib_nas.contract.errors import InvalidInput
from katib_nas.deploy import examples
from katib_nas.runner.manifest import ExperimentSpec, experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm
from katib_nas.suggestion.core.experiment import ExperimentInfo

#: Where examples given by name are: the package's own (katib_nas.examples).
EXAMPLES = examples.FOLDER
BACKENDS = ("katib", "local")
#: Katib's webhook limit on Experiment names.
MAX_NAME_LENGTH = 40


@dataclass(frozen=True)
class SearchRequest:
    """What the pipeline asks of the search: empty or zero values keep the example's own."""

    algorithm: str = ""
    max_trials: int = 0
    parallel_trials: int = 0
    trial_args: tuple[str, ...] = field(default_factory=tuple)


def example_names(folder: Path = EXAMPLES) -> list[str]:
    """Names of the example Experiments shipped with katib-nas."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def find_example(name_or_path: str, folder: Path = EXAMPLES) -> Path:
    """The Experiment's YAML file: a path to one, or the name of a shipped example; InvalidInput listing them."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = folder / f"{candidate.name.removesuffix('.yaml').removesuffix('.yml')}.yaml"
    if path.is_file() and "/" not in name_or_path:
        return path
    raise InvalidInput(f"no file {name_or_path!r} and no example of that name; examples: "
                       f"{', '.join(example_names(folder)) or 'none'}")


def load_example(name_or_path: str) -> dict[str, Any]:
    """The example's Experiment document; InvalidInput if it is missing or not an Experiment."""
    path = find_example(name_or_path)
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or document.get("kind") != "Experiment":
        raise InvalidInput(f"{path} is not a Katib Experiment (kind: Experiment)")
    return document


def check_algorithm(name: str) -> None:
    """InvalidInput naming the available algorithms unless `name` is empty or registered."""
    if name:
        get_algorithm(name)


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise InvalidInput(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")


def split_trial_args(text: str) -> tuple[str, ...]:
    """Whitespace-separated `--flag=value` arguments; InvalidInput for anything else. A value holds no character
    a shell reads: on a cluster Katib runs the trial's command through `sh -c` (its collector's wrapper), where
    `$`, quotes or `;` would mean something else than in the local run."""
    args = tuple(text.split())
    for arg in args:
        if not re.fullmatch(r"--[a-z0-9][a-z0-9-]*(=\S*)?", arg):
            raise InvalidInput(f"trial argument {arg!r} must look like --flag=value")
        if not re.fullmatch(r"[^=]*(=[\w./:,+=@%-]*)?", arg):
            raise InvalidInput(f"trial argument {arg!r}: a value may hold only letters, digits and . / : , + = @ % _ - "
                               f"(Katib runs the trial's command through sh)")
    return args


def apply_request(document: dict[str, Any], request: SearchRequest) -> dict[str, Any]:
    """A copy of the Experiment with the request applied and checked as Katib's webhook would check it."""
    result = copy.deepcopy(document)
    spec = result.setdefault("spec", {})
    if request.algorithm:
        check_algorithm(request.algorithm)
        spec.setdefault("algorithm", {})["algorithmName"] = request.algorithm
        if request.algorithm != (document.get("spec", {}).get("algorithm") or {}).get("algorithmName"):
            spec["algorithm"].pop("algorithmSettings", None)
    if request.max_trials:
        spec["maxTrialCount"] = request.max_trials
        spec["parallelTrialCount"] = min(int(spec.get("parallelTrialCount") or 1), request.max_trials)
        if spec.get("maxFailedTrialCount") is not None:
            spec["maxFailedTrialCount"] = min(int(spec["maxFailedTrialCount"]), request.max_trials)
    if request.parallel_trials:
        spec["parallelTrialCount"] = request.parallel_trials
    if request.trial_args:
        override_container_args(result, request.trial_args)
    check_experiment(result)
    return result


def trial_pod(document: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of the Experiment's trial; InvalidInput for a trial kind that has none (a PyTorchJob's
    replicas, a TrainJob's runtime make their pods), whose containers the pipeline's steps cannot take over."""
    trial_spec = document["spec"]["trialTemplate"].get("trialSpec") or {}
    pod = ((trial_spec.get("spec") or {}).get("template") or {}).get("spec")
    if not isinstance(pod, dict) or not isinstance(pod.get("containers"), list):
        raise InvalidInput(f"the pipeline takes an Experiment whose trial is a Job with a pod template; this one's "
                           f"trial is a {trial_spec.get('kind', 'spec without a kind')}: use its Job counterpart "
                           "(e.g. nas-random-fashion-mnist) and final_backend=trainjob to train the winner on "
                           "several nodes")
    return pod


def override_container_args(document: dict[str, Any], overrides: tuple[str, ...]) -> None:
    """Replace each `--flag=...` of the primary container's command (or append it), in place."""
    template = document["spec"]["trialTemplate"]
    containers = trial_pod(document)["containers"]
    primary = next((c for c in containers if c.get("name") == template.get("primaryContainerName")), None)
    if primary is None:
        raise InvalidInput("spec.trialTemplate: no container is named as primaryContainerName")
    key = "args" if primary.get("args") else "command"
    argv = list(primary.get(key) or [])
    for override in overrides:
        flag = override.split("=", 1)[0]
        positions = [i for i, arg in enumerate(argv) if arg == flag or arg.startswith(flag + "=")]
        if positions:
            argv[positions[0]] = override
        else:
            argv.append(override)
    primary[key] = argv


def check_experiment(document: dict[str, Any]) -> tuple[str, ...]:
    """Katib's admission checks, the algorithm's own settings checks, and: every assignment the algorithm
    returns is referenced by a trialParameter. Returns the assignment names."""
    spec = experiment_from_document(document)
    algorithm = get_algorithm(spec.algorithm)
    info = experiment_info(spec)
    algorithm.validate(info)
    names = algorithm.assignment_names(info)
    references = {p.reference for p in spec.template.parameters}
    missing = [name for name in names if name not in references]
    if missing:
        raise InvalidInput(f"algorithm {spec.algorithm!r} assigns {missing[0]!r}, but no "
                           f"spec.trialTemplate.trialParameters entry references it; start from an example "
                           f"written for {spec.algorithm} ({', '.join(examples_for(spec.algorithm)) or 'none'})")
    return names


def experiment_info(spec: ExperimentSpec) -> ExperimentInfo:
    """What an algorithm sees of a checked Experiment, as plain objects (no protobuf round trip)."""
    return ExperimentInfo(
        name=spec.name, algorithm=spec.algorithm, settings=dict(spec.algorithm_settings),
        objective_metric=spec.objective.metric, maximize=spec.objective.maximize,
        additional_metrics=spec.objective.additional, goal=spec.objective.goal,
        parallel_trial_count=spec.parallel_trial_count, max_trial_count=spec.max_trial_count or 0,
        nas_config=spec.nas_config)


def examples_for(algorithm: str, folder: Path = EXAMPLES) -> list[str]:
    """Names of the examples whose algorithmName is `algorithm`."""
    found = []
    for path in sorted(folder.glob("*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        if ((document.get("spec") or {}).get("algorithm") or {}).get("algorithmName") == algorithm:
            found.append(path.stem)
    return found


def experiment_name(document: dict[str, Any], run_id: str) -> str:
    """A Katib-valid, per-run unique name: the example's name cut to fit, a dash, 8 hex digits of the run."""
    base = str((document.get("metadata") or {}).get("name") or "katib-nas")
    suffix = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    head = base[:MAX_NAME_LENGTH - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"

