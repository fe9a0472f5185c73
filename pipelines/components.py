"""Kubeflow Pipelines v2 components: nas_search, train_final, export_model.

Each is a lightweight Python component whose body imports katib_nas and calls `steps`; KFP copies only
the function's source into the pod, so every import sits inside the body. On a cluster the components
run in the trial image, which carries katib_nas, torch, kfp and the kubernetes client: nothing is
installed when a step starts. With kfp.local's SubprocessRunner(use_venv=False) they run in the current
environment.
"""

from typing import Callable, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from katib_nas.deploy.images import TRIAL_CPU_IMAGE

DEFAULT_IMAGE = TRIAL_CPU_IMAGE


def nas_search(experiment_yaml: str, algorithm: str, max_trials: int, parallel_trials: int, trial_args: str,
               backend: str, namespace: str, timeout_minutes: int, keep_experiment: bool, run_id: str,
               search_metrics: Output[Metrics], report: Output[Markdown], search_report: Output[HTML],
               trials: Output[Markdown], trials_csv: Output[Dataset], poll_seconds: int = 15
               ) -> NamedTuple("SearchOutputs", [("architecture", str), ("metrics_json", str)]):
    """Search: run a Katib Experiment (backend=katib; namespace "" = the pod's own) or run it locally
    (backend=local); the best architecture, and the search's report (HTML page, trials table and CSV)."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from katib_nas.pipelines import steps
    from katib_nas.pipelines.search_request import SearchRequest, split_trial_args

    request = SearchRequest(algorithm=algorithm, max_trials=max_trials, parallel_trials=parallel_trials,
                            trial_args=split_trial_args(trial_args))
    run = steps.KatibRun(namespace=namespace, run_id=run_id, timeout_s=timeout_minutes * 60, poll_s=poll_seconds,
                         keep=keep_experiment)
    result = steps.run_search(experiment_yaml, request, backend, run, Path(report.path).parent / "search-run")
    for name, value in steps.numeric_metrics(result.metrics).items():
        search_metrics.log_metric(name, value)
    Path(report.path).write_text(steps.search_markdown(result, backend, run))
    folder = Path(result.report) if result.report else None
    page = folder / "report.html" if folder else None
    Path(search_report.path).write_text(page.read_text() if page and page.is_file() else
                                        "<html><body><p>No report could be written; the step's log says why.</p>"
                                        "</body></html>\n")
    Path(trials.path).write_text(steps.trials_markdown(result.report))
    table = folder / "trials.csv" if folder else None
    Path(trials_csv.path).write_text(table.read_text() if table and table.is_file() else "")
    outputs = namedtuple("SearchOutputs", ["architecture", "metrics_json"])
    return outputs(result.architecture, json.dumps(result.metrics, sort_keys=True))


def train_final(architecture: str, dataset: str, data_dir: str, epochs: int, max_train_samples: int, test: bool,
                batch_size: int, seed: int, threads: int, model: Output[Model], metrics: Output[Metrics],
                backend: str = "pod", nodes: int = 2, procs_per_node: int = 1, checkpoint_dir: str = "",
                run_id: str = "", namespace: str = "", image: str = "", work_claim: str = "",
                work_mount: str = "", node_resources: str = "", data_volumes: str = "",
                runtime: str = "torch-distributed") -> None:
    """Train the architecture with the full budget, in this pod (backend=pod; with checkpoint_dir a retried
    step continues from the last epoch) or as a Kubeflow Trainer TrainJob on `nodes` nodes (backend=trainjob,
    checkpoints on the work claim; every node gets this step's limits `node_resources` and data claims
    `data_volumes`; `runtime`: NAME of a ClusterTrainingRuntime or TrainingRuntime/NAME in `namespace`); the
    Model artifact is the trial's export folder, and with `test` its metrics include Test-Accuracy and Test-Loss
    on the dataset's test set."""
    from pathlib import Path

    from katib_nas.pipelines import steps

    config = steps.FinalTraining(dataset=dataset, data_dir=data_dir, epochs=epochs,
                                 max_train_samples=max_train_samples, test=test, batch_size=batch_size,
                                 seed=seed, threads=threads, checkpoint_dir=checkpoint_dir)
    if backend == "trainjob":
        settings = steps.trainjob_settings(image, work_claim, work_mount, nodes, procs_per_node, namespace,
                                           node_resources, data_volumes, runtime)
        final = steps.train_final_trainjob(architecture, config, settings, run_id, Path(model.path))
    else:
        final = steps.train_final(architecture, config, Path(model.path))
    model.metadata["architecture"] = architecture
    for name, value in steps.numeric_metrics(final).items():
        metrics.log_metric(name, value)


def export_model(model: Input[Model], search_metrics_json: str, torchscript: Output[Model],
                 onnx_model: Output[Model], diagram: Output[HTML], visualization: Output[Markdown]) -> None:
    """TorchScript and ONNX files, the network diagram (HTML) and a Markdown description for the KFP UI."""
    import json
    from pathlib import Path

    from katib_nas.pipelines import steps

    files = steps.export_model(Path(model.path), Path(torchscript.path), Path(onnx_model.path),
                               json.loads(search_metrics_json or "{}"))
    torchscript.metadata["format"] = "torchscript"
    onnx_model.metadata["format"] = "onnx"
    Path(diagram.path).write_text(f"<html><body>{files.diagram_svg}</body></html>\n")
    Path(visualization.path).write_text(files.markdown)


def make_components(image: str = DEFAULT_IMAGE) -> dict[str, Callable]:
    """The three components, built for `image` (a trial image: katib_nas and kfp installed)."""
    return {name: dsl.component(function, base_image=image, install_kfp_package=False)
            for name, function in (("nas_search", nas_search), ("train_final", train_final),
                                   ("export_model", export_model))}
