"""The katib-nas pipeline: nas_search -> train_final -> export_model, compiled for one example Experiment.

The example is read when the pipeline is built (a missing one fails there), and its YAML travels in the
compiled pipeline, so the cluster needs no copy of examples/. From the example's trial container the
pipeline also takes, unless told otherwise, the image its steps run in, the final training's CPU, memory
and accelerator limits, and the PersistentVolumeClaims its data comes from (mounted at the same paths, with
kfp-kubernetes). Runtime parameters are checked by `check_arguments` before a run is started
(`run_local`, `submit`, `katib-nas pipeline`); the search step checks them again, so a run started from the
KFP UI fails on its first step with the same message.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import is_dns1123_label
from katib_nas.runner.trial_template import trial_flags
from katib_nas.trial_image.data import TEST_SETS
from katib_nas.trial_image.inputs import DEFAULTS

from .search_request import (
    SearchRequest,
    apply_request,
    check_backend,
    find_example,
    load_example,
    split_trial_args,
    trial_pod,
)
from .steps import FinalTraining, KatibRun, StepResources
from .trainjob import TrainJobSettings, runtime_ref

DEFAULT_EXAMPLE = "nas-random-fashion-mnist"
PIPELINE_NAME = "katib-nas"
#: The compiled default pipeline, committed next to this module.
COMPILED = Path(__file__).resolve().parent / "nas_pipeline.yaml"


@dataclass(frozen=True)
class FinalDefaults:
    """Defaults of the final-training parameters, taken from the example's trial command."""

    dataset: str = DEFAULTS.dataset
    data_dir: str = ""
    batch_size: int = DEFAULTS.batch_size

    @property
    def test(self) -> bool:
        """Whether the final training reports test metrics by default: when the dataset has a test set."""
        return self.dataset in TEST_SETS


def final_defaults(document: dict[str, Any]) -> FinalDefaults:
    """Dataset, data dir and batch size of the example's trial command (the budget flags are not kept)."""
    template = document["spec"]["trialTemplate"]
    args = trial_flags(template["trialSpec"], str(template.get("primaryContainerName", "")),
                       ("--dataset", "--data-dir", "--batch-size")) or {}
    return FinalDefaults(dataset=args.get("--dataset", DEFAULTS.dataset), data_dir=args.get("--data-dir", ""),
                         batch_size=int(args.get("--batch-size", DEFAULTS.batch_size)))


@dataclass(frozen=True)
class DataVolume:
    """A PersistentVolumeClaim the steps mount, where the trials mount it."""

    claim: str
    mount_path: str


@dataclass(frozen=True)
class StepSettings:
    """What the steps run in; None takes the example trial container's. `trainjob_volume` is the claim the
    final training's TrainJob keeps its checkpoint and model on (final_backend=trainjob)."""

    image: str | None = None
    resources: StepResources | None = None
    volumes: tuple[DataVolume, ...] | None = None
    trainjob_volume: DataVolume | None = None


def _primary_pod(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    template = document["spec"]["trialTemplate"]
    pod = trial_pod(document)
    container = next(c for c in pod["containers"] if c.get("name") == template.get("primaryContainerName"))
    return pod, container


def trial_image(document: dict[str, Any]) -> str:
    """The image of the example's trial container."""
    return str(_primary_pod(document)[1]["image"])


def trial_resources(document: dict[str, Any]) -> StepResources:
    """The trial container's limits: cpu, memory and the first extended resource (an accelerator)."""
    return StepResources.from_limits((_primary_pod(document)[1].get("resources") or {}).get("limits") or {})


def data_volumes(document: dict[str, Any]) -> tuple[DataVolume, ...]:
    """The PersistentVolumeClaims the trial container mounts, with their mount paths."""
    pod, container = _primary_pod(document)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes") or []
              if "persistentVolumeClaim" in v}
    return tuple(DataVolume(claims[m["name"]], m["mountPath"]) for m in container.get("volumeMounts") or []
                 if m["name"] in claims)


def _limit(task: Any, resources: StepResources) -> None:
    if resources.cpu:
        task.set_cpu_limit(resources.cpu)
    if resources.memory:
        task.set_memory_limit(resources.memory)
    if resources.accelerator:
        task.set_accelerator_type(resources.accelerator).set_accelerator_limit(resources.accelerator_count)


def _mount(task: Any, volumes: tuple[DataVolume, ...]) -> None:
    from kfp import kubernetes

    for volume in volumes:
        kubernetes.mount_pvc(task, pvc_name=volume.claim, mount_path=volume.mount_path)


def build_pipeline(example: str = DEFAULT_EXAMPLE, settings: StepSettings = StepSettings()) -> Callable:
    """The pipeline function for `example` (a name under examples/ or a path)."""
    from kfp import dsl

    from .components import make_components

    document = load_example(example)
    apply_request(document, SearchRequest())
    experiment_yaml = yaml.safe_dump(document, sort_keys=False)
    defaults = final_defaults(document)
    image = settings.image or trial_image(document)
    components = make_components(image)
    work = settings.trainjob_volume
    resources = settings.resources or trial_resources(document)
    volumes = data_volumes(document) if settings.volumes is None else settings.volumes
    example_name = find_example(example).stem

    @dsl.pipeline(name=PIPELINE_NAME, description=f"Neural architecture search with Katib ({example_name}), "
                                                  f"final training and export")
    def nas_pipeline(algorithm: str = "", max_trials: int = 0, parallel_trials: int = 0, trial_args: str = "",
                     backend: str = "katib", namespace: str = "",
                     timeout_minutes: int = KatibRun.timeout_s // 60,
                     keep_experiment: bool = True, dataset: str = defaults.dataset,
                     data_dir: str = defaults.data_dir, final_epochs: int = FinalTraining.epochs,
                     final_max_train_samples: int = 0,
                     final_test: bool = defaults.test, batch_size: int = defaults.batch_size, seed: int = 0,
                     threads: int = 0, final_backend: str = "pod", final_nodes: int = TrainJobSettings.num_nodes,
                     final_procs_per_node: int = TrainJobSettings.procs_per_node, final_checkpoint_dir: str = "",
                     final_runtime: str = TrainJobSettings.runtime) -> None:
        search = components["nas_search"](
            experiment_yaml=experiment_yaml, algorithm=algorithm, max_trials=max_trials,
            parallel_trials=parallel_trials, trial_args=trial_args, backend=backend, namespace=namespace,
            timeout_minutes=timeout_minutes, keep_experiment=keep_experiment,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        search.set_caching_options(False)
        search.set_display_name("nas-search")
        _mount(search, volumes)
        final = components["train_final"](
            architecture=search.outputs["architecture"], dataset=dataset, data_dir=data_dir, epochs=final_epochs,
            max_train_samples=final_max_train_samples, test=final_test, batch_size=batch_size, seed=seed,
            threads=threads, backend=final_backend, nodes=final_nodes, procs_per_node=final_procs_per_node,
            checkpoint_dir=final_checkpoint_dir, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, namespace=namespace,
            image=image, work_claim=work.claim if work else "", work_mount=work.mount_path if work else "",
            node_resources=resources.text(), data_volumes=",".join(f"{v.claim}:{v.mount_path}" for v in volumes),
            runtime=final_runtime)
        final.set_display_name("train-final")
        _limit(final, resources)
        _mount(final, volumes + ((work,) if work else ()))
        export = components["export_model"](model=final.outputs["model"],
                                            search_metrics_json=search.outputs["metrics_json"])
        export.set_display_name("export-model")

    return nas_pipeline


def compile_pipeline(output: Path, example: str = DEFAULT_EXAMPLE, settings: StepSettings = StepSettings()) -> Path:
    """Write the compiled pipeline YAML (what you upload to Kubeflow Pipelines)."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(example, settings), str(output))
    return output


def check_arguments(arguments: dict[str, Any], example: str = DEFAULT_EXAMPLE) -> None:
    """InvalidInput for a run argument the search would refuse: unknown algorithm or backend, bad trial args,
    a budget or a name that Katib's webhook rejects."""
    known = {"algorithm", "max_trials", "parallel_trials", "trial_args", "backend", "namespace",
             "timeout_minutes", "keep_experiment", "dataset", "data_dir", "final_epochs", "final_max_train_samples", "final_test",
             "batch_size", "seed", "threads", "final_backend", "final_nodes", "final_procs_per_node",
             "final_checkpoint_dir", "final_runtime"}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise InvalidInput(f"unknown pipeline parameter {unknown[0]!r}; parameters: {', '.join(sorted(known))}")
    check_backend(str(arguments.get("backend", "katib")))
    check_final_backend(arguments)
    document = load_example(example)
    check_final_test(arguments, final_defaults(document))
    namespace = str(arguments.get("namespace", ""))
    if namespace and not is_dns1123_label(namespace):
        raise InvalidInput(f"namespace {namespace!r} is not a valid Kubernetes namespace name (or leave it empty: "
                           "the step's own namespace)")
    request = SearchRequest(algorithm=str(arguments.get("algorithm", "")),
                            max_trials=_count(arguments, "max_trials"),
                            parallel_trials=_count(arguments, "parallel_trials"),
                            trial_args=split_trial_args(str(arguments.get("trial_args", ""))))
    apply_request(document, request)


def _count(arguments: dict[str, Any], name: str) -> int:
    """A budget argument: a whole number, 0 keeping the example's own."""
    value = arguments.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a whole number of at least 0 (0: the example's own), not {value!r}")
    return value


FINAL_BACKENDS = ("pod", "trainjob")


def check_final_backend(arguments: dict[str, Any]) -> None:
    """InvalidInput for a final-training backend or size the step would refuse."""
    backend = str(arguments.get("final_backend", "pod"))
    if backend not in FINAL_BACKENDS:
        raise InvalidInput(f"final_backend {backend!r} must be one of {', '.join(FINAL_BACKENDS)}")
    for name in ("final_nodes", "final_procs_per_node"):
        value = arguments.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            raise InvalidInput(f"{name} must be a whole number in [1, 1024], not {value!r}")
    runtime_ref(str(arguments.get("final_runtime", TrainJobSettings.runtime)))


def check_final_test(arguments: dict[str, Any], defaults: FinalDefaults) -> None:
    """InvalidInput when the final training would report test metrics of a dataset that has no test set."""
    dataset = str(arguments.get("dataset", defaults.dataset))
    final_test = arguments.get("final_test", defaults.test)
    if not isinstance(final_test, bool):
        raise InvalidInput(f"final_test must be true or false, not {final_test!r}")
    if final_test and dataset not in TEST_SETS:
        raise InvalidInput(f"final_test needs a dataset with a separate test set ({', '.join(TEST_SETS)}); "
                           f"dataset {dataset} has none: pass final_test=false")


@dataclass(frozen=True)
class LocalRunFiles:
    """What a local pipeline run leaves a user: the run's folder (one per step inside) and the trained network's
    files, named by kfp.local after the steps' outputs."""

    folder: Path

    @property
    def torchscript(self) -> Path:
        return self.folder / "export-model" / "torchscript"

    @property
    def onnx(self) -> Path:
        return self.folder / "export-model" / "onnx_model"

    @property
    def model(self) -> Path:
        """The final training's export folder: model.json (architecture, input normalisation) and its files."""
        return self.folder / "train-final" / "model"


def run_local(arguments: dict[str, Any], pipeline_root: Path | str, example: str = DEFAULT_EXAMPLE) -> LocalRunFiles:
    """Run the whole pipeline on this machine with kfp.local's SubprocessRunner (backend defaults to local), in a
    new folder of `pipeline_root` (so that runs side by side never share one); its files."""
    import tempfile

    from kfp import local

    arguments = {"backend": "local", **arguments}
    check_arguments(arguments, example)
    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    build_pipeline(example)(**arguments)
    (folder,) = root.iterdir()
    return LocalRunFiles(folder)


def submit(client: Any, arguments: dict[str, Any], example: str = DEFAULT_EXAMPLE,
           settings: StepSettings = StepSettings(), service_account: str | None = None,
           experiment: str | None = None) -> Any:
    """Start a run on Kubeflow Pipelines (`client` is a kfp.Client) after checking the arguments. The steps run
    under KFP's default account (pipeline-runner; default-editor in a Kubeflow profile) unless
    `service_account` names another."""
    check_arguments(arguments, example)
    return client.create_run_from_pipeline_func(build_pipeline(example, settings), arguments=arguments,
                                                experiment_name=experiment, service_account=service_account)
