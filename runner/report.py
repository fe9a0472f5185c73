"""The report of an experiment: best architecture, trials CSV, plots, diagram, summary, one HTML page.

It is written from a `ReportInput`: a local run's store (`read_local`), or a Katib Experiment and its
Trials read from a cluster (katib_nas.pipelines.katib_results). Files written to WORKDIR/report (or
another folder):
  best_architecture.txt, best_architecture.json   the best trial's architecture (text and JSON)
  trials.csv                                       one row per trial: condition, times, metrics, assignments
  objective.png                                    objective per trial with the best-so-far line
  pareto.png                                       objective against latency with the Pareto front
                                                   (when a latency metric is among the experiment's metrics)
  curves.png                                       every trial's objective per report (epoch)
  best_network.svg, best_network.png               diagram of the best network
  summary.md                                       a short Markdown summary linking the rest
  report.html                                      all of it in one self-contained page (report_html.py)
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from katib_nas.contract.assignments import final_architecture
from katib_nas.contract.codec import decode, to_dict
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture
from katib_nas.contract.trial_bounds import FINAL_EPOCHS

from .diagram import draw
from .manifest import Objective, experiment_from_document
from .metrics_collector import UNAVAILABLE, MetricLog, finite_value, go_float, go_float_value
from .plot_scale import AxisScale
from .status import Summary, objective_value, summarize_trials
from .store import REPORT_FOLDER, Store, TrialRow
from .trial_template import data_flags
from .workdir_run import WorkdirRun

TOP_TRIALS = 5


@dataclass(frozen=True)
class ReportInput:
    """What a report is written from, wherever the experiment ran: its name, algorithm and objective, its
    condition, its trials (in creation order) and each trial's metric logs in the order they were reported."""

    name: str
    algorithm: str
    objective: Objective
    condition: str
    reason: str
    trials: list[TrialRow]
    logs: dict[str, list[MetricLog]] = field(default_factory=dict)
    #: Where the experiment was read, e.g. "local run in runs/demo" or "Katib Experiment kubeflow/x".
    source: str = ""
    #: Lines the reader wants shown, e.g. why per-epoch curves are missing.
    notes: tuple[str, ...] = ()
    #: The trial command's data flags (`--dataset=...`, `--data-dir=...`), for the command that trains the best
    #: network into files; None when the command could not be read.
    data_flags: tuple[str, ...] | None = ()

    @cached_property
    def summary(self) -> Summary:
        """The trials summarised once for every part of the report (best trial, counts)."""
        return summarize_trials(self.trials, self.objective)


@dataclass(frozen=True)
class Point:
    trial: str
    latency: float
    objective: float


def write_report(workdir: Path, output: Path | None = None, report: ReportInput | None = None) -> Path:
    """Write every report file of a local run (read from the workdir unless `report` is given: what
    read_local returned); returns the path of summary.md. Reads the run read-only; InvalidInput (one line)
    when the report folder cannot be written."""
    folder = Path(output) if output else Path(workdir) / REPORT_FOLDER
    try:
        return write_report_files(report or read_local(Path(workdir)), folder)
    except OSError as err:
        raise InvalidInput(f"cannot write the report to {folder}: {err.strerror or err}; write it elsewhere with: "
                           f"katib-nas report {workdir} --output DIR") from None


def read_local(workdir: Path) -> ReportInput:
    """A local run's experiment, trials and metric logs from its store; a run stopped by Ctrl-C is Interrupted."""
    store = Store.open_existing(workdir)
    try:
        experiment = store.experiment()
        if experiment is None:
            raise InvalidInput(f"{workdir} holds no experiment yet")
        spec = experiment_from_document(experiment.document)
        trials, logs = store.trials(), store.metric_logs()
    finally:
        store.close()
    run = WorkdirRun.of(workdir, experiment, len(trials))
    condition, reason = experiment.condition, experiment.reason
    if run.interrupted:
        condition, reason = "Interrupted", f"resumable: `{run.resume_command()}`"
    return ReportInput(spec.name, spec.algorithm, spec.objective, condition, reason, trials, logs,
                       f"local run in {workdir}",
                       data_flags=data_flags(spec.template.spec, spec.template.primary_container, experiment.trial_args,
                                             experiment.cwd))


#: Every file a report may write; summary.md, which names the others, goes last.
REPORT_FILES = ("trials.csv", "best_architecture.txt", "best_architecture.json", "best_network.svg",
                "best_network.png", "objective.png", "pareto.png", "curves.png", "report.html", "summary.md")
#: The hidden folder inside the report folder that a report is written into before it is moved in.
STAGING_PREFIX = ".report-"


def write_report_files(spec: ReportInput, folder: Path) -> Path:
    """Write the report into `folder` whole, replacing an earlier report there: its files are written aside
    (a hidden folder inside `folder`) and moved in only once all are written, and an earlier report's file
    that this one does not write (the best network of another run) is removed. Returns summary.md's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(f"{STAGING_PREFIX}*"):  # of a report killed before it could clean up
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        _write_report_files(spec, staging)
        for name in REPORT_FILES:
            if (staging / name).exists():
                os.replace(staging / name, folder / name)
            else:
                (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "summary.md"


def _write_report_files(spec: ReportInput, folder: Path) -> Path:
    from .report_html import write_html

    trials, summary = spec.trials, spec.summary
    write_csv(folder / "trials.csv", spec, trials)
    files = {"trials": "trials.csv"}
    arch = best_architecture(summary.best)
    if arch is not None and summary.best is not None:
        files.update(write_best(folder, arch, summary.best, spec))
    if plot_objective(folder / "objective.png", spec, trials):
        files["objective"] = "objective.png"
    latency = latency_metric(spec)
    if latency and plot_pareto(folder / "pareto.png", spec, trials, latency):
        files["pareto"] = "pareto.png"
    if plot_curves(folder / "curves.png", spec):
        files["curves"] = "curves.png"
    files["html"] = write_html(folder / "report.html", spec, summary, files).name
    path = folder / "summary.md"
    path.write_text(summary_markdown(spec, spec.condition, spec.reason, trials, summary, arch, files))
    return path


def metric_value(trial: TrialRow, spec: ReportInput, name: str) -> str:
    summary = trial.observation.get(name)
    return summary.value(spec.objective.strategy(name)) if summary else ""


def write_csv(path: Path, spec: ReportInput, trials: Sequence[TrialRow]) -> None:
    names = sorted({key for trial in trials for key in trial.assignments})
    metrics = list(spec.objective.metric_names)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "seq", "condition", "started", "completed", "duration_s", "exit_code"]
                        + metrics + names + ["message"])
        for trial in trials:
            duration = f"{trial.duration:.2f}" if trial.duration is not None else ""
            writer.writerow([trial.name, trial.seq, trial.condition, _iso(trial.started_at),
                             _iso(trial.completed_at), duration, "" if trial.exit_code is None else trial.exit_code]
                            + [metric_value(trial, spec, m) for m in metrics]
                            + [trial.assignments.get(n, "") for n in names] + [trial.message])


def architecture_text(trial: TrialRow) -> str:
    """The text of the network a trial stands for (the shared rule: a reported Best-Architecture first), or ""."""
    return final_architecture(trial.assignments, {name: s.latest for name, s in trial.observation.items()}) or ""


def train_command(arch: Architecture, spec: ReportInput) -> tuple[str, str]:
    """What the report says under the best trial: a caption, and the shell command that trains `arch` on the
    trials' data and split (without their --max-train-samples cap) for FINAL_EPOCHS epochs and exports it into
    model/; the flags to add instead when the trial command could not be read for them."""
    command = ["katib-nas", "trial", f"--architecture={to_dict(arch)['text']}", *(spec.data_flags or ()),
               f"--epochs={FINAL_EPOCHS}", "--export-dir=model"]
    if spec.data_flags is None:
        return ("Its network as files (TorchScript, ONNX and model.json in model/): the trial command could not be "
                "read for its data, so add the trials' --dataset and --data-dir to:"), shlex.join(command)
    return (f"Its network as files (TorchScript, ONNX and model.json in model/), trained for {FINAL_EPOCHS} epochs "
            "on the trials' data (--data-dir as the trials read it) without a cap on the training images:",
            shlex.join(command))


def best_architecture(best: TrialRow | None) -> Architecture | None:
    """The network the best trial stands for."""
    text = architecture_text(best) if best is not None else ""
    return decode(text) if text else None


def write_best(folder: Path, arch: Architecture, best: TrialRow, spec: ReportInput) -> dict[str, str]:
    text = to_dict(arch)["text"]
    (folder / "best_architecture.txt").write_text(text + "\n")
    metrics = {name: metric_value(best, spec, name) for name in spec.objective.metric_names}
    document = {"trial": best.name, "metrics": metrics, "architecture": to_dict(arch)}
    (folder / "best_architecture.json").write_text(json.dumps(document, indent=2) + "\n")
    title = f"{best.name}  {spec.objective.metric}={metrics[spec.objective.metric]}"
    draw(arch, folder / "best_network.svg", title)
    draw(arch, folder / "best_network.png", title)
    return {"best_text": "best_architecture.txt", "best_json": "best_architecture.json",
            "diagram": "best_network.svg", "diagram_png": "best_network.png"}


def plot_objective(path: Path, spec: ReportInput, trials: Sequence[TrialRow]) -> bool:
    """Finite objective values per trial, with the best so far (non-finite ones are listed in the summary)."""
    points = [(t.seq, finite_value(objective_value(t, spec.objective))) for t in trials]
    numeric = [(seq, value) for seq, value in points if value is not None]
    if not numeric:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs, ys = zip(*numeric)
    goal = spec.objective.goal
    scale = AxisScale.for_values(list(ys) + ([goal] if goal is not None else []))
    ax.scatter(xs, scale.apply(ys), s=22, color="#1d3557", label=spec.objective.metric, zorder=3)
    best, running = [], None
    for value in ys:
        running = value if running is None else (max(running, value) if spec.objective.maximize
                                                  else min(running, value))
        best.append(running)
    ax.step(xs, scale.apply(best), where="post", color="#e63946", label="best so far")
    if goal is not None:
        ax.axhline(scale.apply([goal])[0], color="#999999", linestyle=":", label="goal")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered 1, 2, ...: no 2.5
    scale.configure(ax.yaxis)
    _save(plt, fig, ax, path, "trial", scale.label(spec.objective.metric),
          f"{spec.name}: {spec.objective.metric} per trial")
    return True


def latency_metric(spec: ReportInput) -> str:
    """The first of the experiment's metrics whose name mentions latency, or ""."""
    return next((name for name in spec.objective.metric_names if "latency" in name.lower()
                 and name != spec.objective.metric), "")


def pareto_front(points: Sequence[Point], maximize: bool) -> list[Point]:
    """Points no other point beats on both latency (lower) and objective; sorted by latency."""
    sign = 1 if maximize else -1
    front, best = [], None
    for point in sorted(points, key=lambda p: (p.latency, -sign * p.objective)):
        if best is None or sign * point.objective > best:
            front.append(point)
            best = sign * point.objective
    return front


def plot_pareto(path: Path, spec: ReportInput, trials: Sequence[TrialRow], latency: str) -> bool:
    points = []
    for trial in trials:
        if trial.condition != "Succeeded":
            continue
        x, y = finite_value(metric_value(trial, spec, latency)), finite_value(objective_value(trial, spec.objective))
        if x is not None and y is not None:
            points.append(Point(trial.name, x, y))
    if not points:
        return False
    plt = _pyplot()
    front = pareto_front(points, spec.objective.maximize)
    x_scale = AxisScale.for_values([p.latency for p in points])
    y_scale = AxisScale.for_values([p.objective for p in points])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(x_scale.apply([p.latency for p in points]), y_scale.apply([p.objective for p in points]), s=22,
               color="#8d99ae", label="trials")
    ax.plot(x_scale.apply([p.latency for p in front]), y_scale.apply([p.objective for p in front]), "-o",
            color="#e63946", markersize=5, label="Pareto front")
    x_scale.configure(ax.xaxis)
    y_scale.configure(ax.yaxis)
    _save(plt, fig, ax, path, x_scale.label(latency), y_scale.label(spec.objective.metric),
          f"{spec.name}: {spec.objective.metric} against {latency}")
    return True


def series(logs: Sequence[MetricLog], metric: str) -> list[float]:
    """The finite numbers a trial reported for `metric`, in report order (strings and non-finite values left out)."""
    values = (go_float(log.value) for log in logs if log.name == metric)
    return [value for value in values if value is not None and math.isfinite(value)]


def plot_curves(path: Path, spec: ReportInput) -> bool:
    """Every trial's objective per report (one line each; the best trial drawn on top in red)."""
    curves = {trial.name: series(spec.logs.get(trial.name, ()), spec.objective.metric) for trial in spec.trials}
    curves = {name: values for name, values in curves.items() if values}
    if not curves:
        return False
    best = spec.summary.best
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        if best is None or name != best.name:
            ax.plot(range(1, len(values) + 1), values, "-o", color="#8d99ae", markersize=2.5, linewidth=0.8,
                    alpha=0.7)
    if best is not None and best.name in curves:
        values = curves[best.name]
        ax.plot(range(1, len(values) + 1), values, "-o", color="#e63946", markersize=3.5, label=f"best: {best.name}")
    ax.plot([], [], "-", color="#8d99ae", label=f"{len(curves)} trials")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(plt, fig, ax, path, "report (epoch)", spec.objective.metric,
          f"{spec.name}: {spec.objective.metric} per report, every trial")
    return True


def _save(plt: Any, fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Label, lay out and write a plot, then free it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_markdown(spec: ReportInput, condition: str, reason: str, trials: Sequence[TrialRow],
                     summary: Summary, arch: Architecture | None, files: dict[str, str]) -> str:
    lines = [f"# {spec.name}", ""]
    if "html" in files:
        lines += [f"The whole report, with a sortable trial table, every trial's curve and network: "
                  f"[{files['html']}]({files['html']}).", ""]
    lines += [f"- Algorithm: `{spec.algorithm}`; objective: {spec.objective.type} `{spec.objective.metric}`"
             + (f" (goal {spec.objective.goal:g})" if spec.objective.goal is not None else ""),
             f"- Status: **{condition}**" + (f" ({reason})" if reason else ""),
             f"- Trials: {len(trials)} ({_counts(summary)})"]
    durations = [t.duration for t in trials if t.duration is not None]
    if durations:
        lines.append(f"- Trial time: {sum(durations):.1f} s in total, {sum(durations) / len(durations):.1f} s "
                     "on average")
    lines.append("")
    if summary.best is not None:
        best = summary.best
        lines += ["## Best trial", "", f"`{best.name}`: " + ", ".join(
            f"{name}={metric_value(best, spec, name)}" for name in spec.objective.metric_names), ""]
        if arch is not None:
            caption, command = train_command(arch, spec)
            lines += ["Architecture:", "", "```", to_dict(arch)["text"], "```", "", caption, "", "```sh", command,
                      "```", ""]
        if "diagram" in files:
            lines += [f"![best network]({files['diagram_png']})", ""]
    else:
        lines += ["No trial reported the objective yet.", ""]
    odd = non_finite_objectives(spec, trials)
    if odd:
        trials_word = "trial with a non-finite objective" if len(odd) == 1 else "trials with a non-finite objective"
        lines += [f"{len(odd)} {trials_word} ({', '.join(odd)}) {'is' if len(odd) == 1 else 'are'} neither ranked "
                  "nor plotted: a failed measurement, as for the algorithms.", ""]
    ranked = _ranked(spec, trials)
    if ranked:
        lines += [f"## Top {len(ranked)} trials", "", f"| trial | {spec.objective.metric} | condition |",
                  "|---|---|---|"]
        lines += [f"| {t.name} | {objective_value(t, spec.objective)} | {t.condition} |" for t in ranked]
        lines.append("")
    lines += ["## Files", ""] + [f"- [{name}]({name})" for name in sorted(set(files.values()))]
    if "objective" in files:
        lines += ["", f"![objective per trial]({files['objective']})"]
    if "pareto" in files:
        lines += ["", f"![Pareto front]({files['pareto']})"]
    if "curves" in files:
        lines += ["", f"![curves]({files['curves']})"]
    return "\n".join(lines) + "\n"


def non_finite_objectives(spec: ReportInput, trials: Sequence[TrialRow]) -> list[str]:
    """Objective values, as reported, that read as NaN, an infinity or a number beyond float64's range."""
    values = [objective_value(t, spec.objective) for t in trials]
    return [v for v in values if v != UNAVAILABLE and (n := go_float_value(v)) is not None and not math.isfinite(n)]


def _ranked(spec: ReportInput, trials: Sequence[TrialRow]) -> list[TrialRow]:
    scored = [(finite_value(objective_value(t, spec.objective)), t) for t in trials]
    numeric = [(v, t) for v, t in scored if v is not None]
    numeric.sort(key=lambda pair: pair[0], reverse=spec.objective.maximize)
    return [t for _, t in numeric[:TOP_TRIALS]]


def _counts(summary: Summary) -> str:
    return ", ".join(f"{count} {condition.lower()}" for condition, count in sorted(summary.counts.items()))


def _iso(moment: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)) if moment is not None else ""


def _pyplot():  # noqa: ANN202 - matplotlib is imported only when a report is written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
