"""What the pipeline's steps do, as plain functions: search (on Katib or locally), final training, export.

The KFP components in `components.py` are thin wrappers that call these, so the work is testable
without KFP and the same code runs in a cluster pod and in kfp.local.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from katib_nas.contract.assignments import final_architecture
from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.exit_codes import EXIT_OK
from katib_nas.contract.metric_format import read_metric_lines
from katib_nas.contract.trial_bounds import FINAL_EPOCHS
from katib_nas.runner.store import REPORT_FOLDER
from katib_nas.trial_image.inputs import DEFAULTS

from .katib_experiment import POLL_S, READ_RETRY_S
from .search_request import SearchRequest, apply_request, experiment_name


class StepFailed(RuntimeError):
    """A step could not produce its result (the search found no architecture, training failed, ...)."""


@dataclass(frozen=True)
class SearchResult:
    """The best trial of a search: its architecture text and its metrics as Katib reported them (text); and the
    folder of the search's report (report.html, trials.csv, ...), "" when none could be written."""

    architecture: str
    trial: str
    metrics: dict[str, str] = field(default_factory=dict)
    experiment: str = ""
    namespace: str = ""
    report: str = ""


def numeric_metrics(metrics: dict[str, str]) -> dict[str, float]:
    """The metrics that are numbers (string metrics such as Branch-Stats are left out)."""
    numbers = {}
    for name, value in metrics.items():
        try:
            numbers[name] = float(value)
        except ValueError:
            continue
    return numbers


def architecture_of(assignments: dict[str, str], metrics: dict[str, str]) -> str:
    """The network the best trial stands for (the shared rule: a reported Best-Architecture first)."""
    text = final_architecture(assignments, metrics)
    if text is None:
        raise StepFailed(f"neither a Best-Architecture metric nor an assignment of the best trial is an "
                         f"architecture: {sorted(assignments)}")
    return text


# --- search -----------------------------------------------------------------------------------------

def search_local(document: dict[str, Any], request: SearchRequest, workdir: Path) -> SearchResult:
    """Run the Experiment with `katib-nas run` on this machine; the best trial from its report."""
    experiment = apply_request(document, request)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    run_dir = workdir / "run"
    completed = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(path),
                                "--workdir", str(run_dir)], stdin=subprocess.DEVNULL)
    best_file = run_dir / REPORT_FOLDER / "best_architecture.json"
    if completed.returncode != EXIT_OK:  # the Experiment Failed (its best so far is still reported) or broke
        raise StepFailed(f"the local search ended with exit {completed.returncode}, not Succeeded; its report and "
                         f"trial logs are under {run_dir}")
    if not best_file.is_file():
        raise StepFailed(f"the local search ended (exit {completed.returncode}) without a successful trial; "
                         f"trial logs are under {run_dir}")
    best = json.loads(best_file.read_text())
    return SearchResult(architecture=best["architecture"]["text"], trial=best["trial"],
                        metrics={k: str(v) for k, v in best["metrics"].items() if v != ""},
                        experiment=str(experiment["metadata"]["name"]), report=str(run_dir / REPORT_FOLDER))


#: Katib's DB manager inside the cluster (kubeflow.katib's default), for the report's per-epoch curves.
DB_MANAGER = "katib-db-manager.kubeflow:6789"


@dataclass(frozen=True)
class KatibRun:
    """How the search step runs its Experiment on Katib: kept afterwards for the Katib UI unless `keep` is off."""

    namespace: str = ""
    run_id: str = ""
    timeout_s: int = 12 * 3600
    poll_s: int = POLL_S
    keep: bool = True
    db_manager: str = DB_MANAGER
    #: How long the wait polls through API errors that pass before it leaves the Experiment and fails.
    read_retry_s: float = READ_RETRY_S


def search_katib(document: dict[str, Any], request: SearchRequest, run: KatibRun, api: Any | None = None,
                 report_dir: Path | None = None) -> SearchResult:
    """Create (or, on a retry, adopt) the Experiment, wait for it, write its report into `report_dir` and return
    its optimal trial; delete the Experiment when anything goes wrong, and after a success unless `run.keep`."""
    from .katib_experiment import (
        KatibExperiment,
        KatibStepError,
        Stopped,
        TimedOut,
        Unreachable,
        default_namespace,
        stop_signals_raise,
    )

    experiment = apply_request(document, request)
    experiment["metadata"] = {**(experiment.get("metadata") or {}), "name": experiment_name(experiment, run.run_id)}
    katib = KatibExperiment(experiment, run.namespace or default_namespace(), run.run_id, api)
    owned = succeeded = unknown = False
    with stop_signals_raise():
        try:
            print(f"{katib.create_or_adopt()} {katib}", flush=True)
            owned = True
            finished = katib.wait(run.timeout_s, run.poll_s, read_retry_s=run.read_retry_s)
            if finished.condition != "Succeeded":
                details = katib.failure_details(katib.get())
                print(search_trials_log(katib), flush=True)
                raise StepFailed(f"{katib} is {finished.condition}: {finished.message}"
                                 + (f" ({details})" if details else ""))
            result = optimal_result(finished.optimal, katib.name, str(katib), katib.namespace)
            succeeded = True  # from here on the search is done: a report that fails does not undo it
            if report_dir is not None:
                result = dataclasses.replace(result, report=katib_report(katib, run, report_dir))
            return result
        except Unreachable as err:
            unknown = True
            raise StepFailed(str(err)) from None
        except TimedOut as err:
            print(search_trials_log(katib), flush=True)
            raise StepFailed(str(err)) from None
        except KatibStepError as err:
            raise StepFailed(str(err)) from None
        except Stopped as stop:
            raise StepFailed(f"the search step was stopped ({stop}) while {katib} ran") from None
        finally:
            if owned and not unknown and not (succeeded and run.keep):
                print(katib.delete(), flush=True)


def search_trials_log(katib: Any) -> str:
    """The trials of a search that did not succeed, for the step's log, which outlives the Experiment and its
    Trials (deleted next) and the step's outputs (not kept when the step fails)."""
    with tempfile.TemporaryDirectory() as folder:
        report = katib_report(katib, KatibRun(db_manager=""), Path(folder))
        return f"the search's trials before {katib} is deleted:\n{trials_markdown(report, limit=1 << 30)}"


def katib_report(katib: Any, run: KatibRun, folder: Path) -> str:
    """The report of the finished Experiment (its Trials, and per-epoch curves from Katib's DB manager when it
    answers), written before the Experiment may be deleted; "" after saying why it could not be read."""
    from katib_nas.deploy.cluster import ClusterError
    from katib_nas.runner.report import write_report_files

    from .katib_results import ClusterExperiment, read_experiment

    try:
        data = read_experiment(katib.api, ClusterExperiment(katib.name, katib.namespace, run.db_manager))
    except ClusterError as err:
        print(f"no report: {err}", flush=True)
        return ""
    try:
        write_report_files(data, folder)
    except Exception as err:  # a full disk, a figure that cannot be drawn: the search it describes stands
        print(f"no report: writing it failed ({type(err).__name__}: {' '.join(str(err).split())[:300]})",
              flush=True)
        return ""
    return str(folder)


def optimal_result(optimal: dict[str, Any], name: str, where: str, namespace: str = "") -> SearchResult:
    """The search result from an Experiment's status.currentOptimalTrial."""
    assignments = {a["name"]: a["value"] for a in optimal.get("parameterAssignments") or []}
    metrics = {m["name"]: m["latest"] for m in (optimal.get("observation") or {}).get("metrics") or []
               if m.get("latest") not in (None, "")}
    if not assignments:
        raise StepFailed(f"{where} succeeded without an optimal trial")
    return SearchResult(architecture=architecture_of(assignments, metrics), trial=optimal.get("bestTrialName") or "",
                        metrics=metrics, experiment=name, namespace=namespace)


def run_search(experiment_yaml: str, request: SearchRequest, backend: str, run: KatibRun, workdir: Path
               ) -> SearchResult:
    """The search step: parse the example text, then run it on Katib or locally; both write the report."""
    from .search_request import check_backend

    check_backend(backend)
    document = yaml.safe_load(experiment_yaml)
    if backend == "local":
        return search_local(document, request, workdir)
    return search_katib(document, request, run, report_dir=workdir / "report")


def trials_markdown(report: str, limit: int = 200) -> str:
    """The report's trials table (trials.csv) as Markdown for the KFP UI: every column, at most `limit` rows."""
    import csv

    path = Path(report) / "trials.csv"
    if not report or not path.is_file():
        return "# Trials\n\nNo report could be written for this search (the step's log says why).\n"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    keep = [i for i, name in enumerate(header) if name not in ("started", "completed", "exit_code")]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells[i].replace("|", "\\|") for i in keep) + " |"

    lines = [f"# Trials ({len(body)})", "", line(header), "|" + "---|" * len(keep)]
    lines += [line(row) for row in body[:limit]]
    if len(body) > limit:
        lines += ["", f"{len(body) - limit} more in trials.csv and the HTML report."]
    return "\n".join(lines) + "\n"


def search_markdown(result: SearchResult, backend: str, run: KatibRun) -> str:
    """What the KFP UI shows for the search step: the winner, its metrics, where to look further."""
    kept = (": kept for the Katib UI and `katib-nas report --experiment`" if run.keep
            else " (deleted after the search: keep_experiment=false)")
    where = (f"Katib Experiment `{result.namespace}/{result.experiment}`{kept}"
             if backend == "katib" else f"local run of `{result.experiment}` (katib-nas run)")
    lines = ["# Architecture search", "", where + ".", "", f"Best trial `{result.trial}`:", "", "```",
             result.architecture, "```", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in sorted(result.metrics.items())]
    return "\n".join(lines) + "\n"


# --- final training ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinalTraining:
    """The full-budget run of the winning architecture."""

    dataset: str = DEFAULTS.dataset
    data_dir: str = ""
    epochs: int = FINAL_EPOCHS
    max_train_samples: int = 0
    test: bool = False
    batch_size: int = DEFAULTS.batch_size
    seed: int = 0
    threads: int = 0
    checkpoint_dir: str = ""


def train_final(architecture: str, config: FinalTraining, model_dir: Path) -> dict[str, str]:
    """Train with `katib-nas trial`'s code path, exporting into `model_dir`; returns the final metrics. With
    `config.checkpoint_dir` (e.g. on a PersistentVolumeClaim) a restarted step continues from the last epoch."""
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        metrics_file = Path(scratch) / "metrics.txt"
        options = TrialOptions(architecture=architecture, dataset=config.dataset, data_dir=config.data_dir or None,
                               epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                               threads=config.threads or None, max_train_samples=config.max_train_samples or None,
                               test=config.test, metrics_file=str(metrics_file), export_dir=str(model_dir),
                               checkpoint_dir=config.checkpoint_dir or None)
        code = run_trial(options)
        if code != 0:
            raise StepFailed(f"final training of {architecture} failed with exit code {code}")
        return read_metric_lines(metrics_file.read_text())


def final_trial_args(architecture: str, config: FinalTraining) -> list[str]:
    """`katib-nas trial` arguments of the final training (outputs and checkpoint are the caller's)."""
    args = [f"--architecture={architecture}", f"--dataset={config.dataset}", f"--epochs={config.epochs}",
            f"--batch-size={config.batch_size}", f"--seed={config.seed}"]
    optional = (("--data-dir", config.data_dir), ("--max-train-samples", config.max_train_samples),
                ("--threads", config.threads))
    args += [f"{flag}={value}" for flag, value in optional if value]
    return args + (["--test"] if config.test else [])


@dataclass(frozen=True)
class StepResources:
    """Limits of the final training step (and of each node of its TrainJob); empty values set none."""

    cpu: str = ""
    memory: str = ""
    accelerator: str = ""
    accelerator_count: int = 0

    @classmethod
    def from_limits(cls, limits: Mapping[str, Any]) -> "StepResources":
        """From a container's resources.limits: cpu, memory and the first extended resource (an accelerator)."""
        values = {str(name): str(value) for name, value in limits.items()}
        accelerator = next((name for name in values if "/" in name), "")
        return cls(cpu=values.get("cpu", ""), memory=values.get("memory", ""), accelerator=accelerator,
                   accelerator_count=int(values[accelerator]) if accelerator else 0)

    @classmethod
    def from_text(cls, text: str) -> "StepResources":
        """The inverse of `text`."""
        return cls.from_limits(dict(pair.split("=", 1) for pair in text.split(",") if pair))

    def text(self) -> str:
        """resource=quantity pairs joined by commas, as the final step hands them to a TrainJob's nodes."""
        pairs = [("cpu", self.cpu), ("memory", self.memory)]
        if self.accelerator and self.accelerator_count:
            pairs.append((self.accelerator, str(self.accelerator_count)))
        return ",".join(f"{name}={value}" for name, value in pairs if value)


def trainjob_settings(image: str, claim: str, mount_path: str, nodes: int, procs_per_node: int, namespace: str,
                      resources: str = "", data_volumes: str = "", runtime: str = "") -> Any:
    """TrainJobSettings for the final-training step, each node with the step's limits (`resources`:
    resource=quantity pairs joined by commas) and data claims (`data_volumes`: claim:path pairs joined by
    commas), on `runtime` (NAME or TrainingRuntime/NAME; empty: TrainJobSettings'); StepFailed when the
    pipeline was compiled without a work claim (`--trainjob-pvc CLAIM:PATH`) or the runtime cannot be named."""
    from .katib_experiment import default_namespace
    from .trainjob import TrainJobSettings, runtime_ref

    if not claim or not mount_path:
        raise StepFailed("final_backend=trainjob needs a PersistentVolumeClaim for the checkpoint and the model: "
                         "compile the pipeline with --trainjob-pvc CLAIM:/path")
    runtime = runtime or TrainJobSettings.runtime
    try:
        runtime_ref(runtime)
    except InvalidInput as err:
        raise StepFailed(str(err)) from None
    limits = StepResources.from_text(resources)
    return TrainJobSettings(image=image, claim=claim, mount_path=mount_path, num_nodes=nodes,
                            procs_per_node=procs_per_node, cpu=limits.cpu, memory=limits.memory,
                            accelerator=limits.accelerator, accelerator_count=limits.accelerator_count,
                            data_volumes=tuple(tuple(pair.split(":", 1)) for pair in data_volumes.split(",") if pair),
                            runtime=runtime, namespace=namespace or default_namespace())


def train_final_trainjob(architecture: str, config: FinalTraining, settings: Any, run_id: str, model_dir: Path,
                         api: Any | None = None) -> dict[str, str]:
    """The final training as a Kubeflow Trainer TrainJob (`settings`: trainjob.TrainJobSettings), data-parallel
    on settings.num_nodes nodes; the export lands in `model_dir`; returns the final metrics."""
    from .trainjob import TrainJobError, TrainJobRun

    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        text = TrainJobRun(settings, run_id, api).train(final_trial_args(architecture, config), model_dir)
    except TrainJobError as err:
        raise StepFailed(str(err)) from None
    return read_metric_lines(text)


# --- export -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportedFiles:
    torchscript: Path
    onnx: Path
    diagram_svg: str
    markdown: str


def export_model(model_dir: Path, torchscript_path: Path, onnx_path: Path, search: dict[str, str] | None = None
                 ) -> ExportedFiles:
    """Check the trained TorchScript runs, write it and an ONNX file, draw the network, describe it in Markdown."""
    import torch

    from katib_nas.trial_image.export import METADATA_FILE

    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    arch = decode(metadata["architecture"])
    source = model_dir / metadata["files"]["torchscript"]
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is what most servers still load.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(source), map_location="cpu").eval()
    channels, height, width = metadata["input"]["shape"]
    example = torch.zeros(2, channels, height, width)
    with torch.no_grad():
        logits = scripted(example)
    if tuple(logits.shape) != (2, arch.num_classes):
        raise StepFailed(f"the exported model gives outputs of shape {tuple(logits.shape)}, "
                         f"expected (batch, {arch.num_classes})")
    torchscript_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, torchscript_path)
    write_onnx(model_dir, metadata, scripted, example, onnx_path)
    svg = diagram_svg(metadata["architecture"])
    markdown = model_markdown(metadata, search or {}, onnx_path.stat().st_size, torchscript_path.stat().st_size)
    return ExportedFiles(torchscript_path, onnx_path, svg, markdown)


def write_onnx(model_dir: Path, metadata: dict[str, Any], scripted: Any, example: Any, onnx_path: Path) -> None:
    """Copy the trial's ONNX file, or convert the TorchScript module when the trial wrote none."""
    import onnx

    from katib_nas.trial_image.export import write_onnx as export_onnx

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    existing = metadata["files"].get("onnx")
    if existing and (model_dir / existing).is_file():
        shutil.copyfile(model_dir / existing, onnx_path)
    else:
        export_onnx(scripted, example, onnx_path)
    onnx.checker.check_model(onnx.load(str(onnx_path)))


def diagram_svg(architecture: str) -> str:
    """The network diagram (the local runner's drawing) as SVG text."""
    from katib_nas.runner.diagram import draw

    with tempfile.TemporaryDirectory() as scratch:
        path = draw(decode(architecture), Path(scratch) / "network.svg", "")
        return path.read_text()


def model_markdown(metadata: dict[str, Any], search: dict[str, str], onnx_bytes: int, torchscript_bytes: int
                   ) -> str:
    """The Markdown the KFP UI shows for the exported model: architecture, stages, metrics, files."""
    arch = decode(metadata["architecture"])
    lines = ["# Exported network", "", "```", metadata["architecture"], "```", "",
             f"Input {'x'.join(str(v) for v in arch.input_shape)} (HxWxC), {arch.num_classes} classes, "
             f"stem width {arch.stem}.", "", "| stage | width | stride | cells |", "|---|---|---|---|"]
    stage_texts = metadata["architecture"].split("/")[1:]
    for index, (stage, text) in enumerate(zip(arch.stages, stage_texts)):
        cells = " ; ".join(f"`{cell}`" for cell in text.split(":")[1:])
        lines.append(f"| {index} | {stage.width} | {stage.stride} | {cells} |")
    lines += ["", "| metric | search (truncated budget) | final (full budget) |", "|---|---|---|"]
    final = metadata.get("metrics") or {}
    for name in sorted(set(search) | set(final)):
        lines.append(f"| {name} | {search.get(name, '')} | {final.get(name, '')} |")
    given = metadata["input"]
    normalise = (f"{given['normalise']} with scale {given['scale']}" if "scale" in given
                 else "(pixel - mean) / std, the pixels' scale not recorded (a model.json of an older trial image)")
    lines += ["", f"Files: TorchScript ({torchscript_bytes} bytes), ONNX ({onnx_bytes} bytes); input layout "
              f"{given['layout']}, normalise pixels as {normalise}, mean {given['mean']} and std "
              f"{given['std']}.", ""]
    return "\n".join(lines)
