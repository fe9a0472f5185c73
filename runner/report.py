"""The report of a run, from its store alone: best architecture, trials CSV, plots, diagram, summary.

Files written to WORKDIR/report (or another folder):
  best_architecture.txt, best_architecture.json   the best trial's architecture (text and JSON)
  trials.csv                                       one row per trial: condition, times, metrics, assignments
  objective.png                                    objective per trial with the best-so-far line
  pareto.png                                       objective against latency with the Pareto front
                                                   (when a latency metric is among the experiment's metrics)
  best_network.svg, best_network.png               diagram of the best network
  summary.md                                       a short Markdown summary linking the rest
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from katib_nas.contract.assignments import final_architecture
from katib_nas.contract.codec import decode, to_dict
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture

from .diagram import draw
from .manifest import ExperimentSpec, experiment_from_document
from .metrics_collector import UNAVAILABLE, finite_value, go_float_value
from .plot_scale import AxisScale
from .status import Summary, objective_value, summarize_trials
from .store import Store, TrialRow
from .workdir_run import WorkdirRun

TOP_TRIALS = 5


@dataclass(frozen=True)
class Point:
    trial: str
    latency: float
    objective: float


def write_report(workdir: Path, output: Path | None = None) -> Path:
    """Write every report file; returns the path of summary.md. Reads the run read-only; InvalidInput (one line)
    when the report folder cannot be written."""
    store = Store.open_existing(Path(workdir))
    try:
        experiment = store.experiment()
        if experiment is None:
            raise InvalidInput(f"{workdir} holds no experiment yet")
        spec = experiment_from_document(experiment.document)
        budget = experiment.budget
        spec = spec.with_budget(budget.get("maxTrialCount"), budget.get("parallelTrialCount"),
                                budget.get("maxFailedTrialCount"))
        trials = store.trials()
    finally:
        store.close()
    run = WorkdirRun.of(Path(workdir), experiment, len(trials))
    condition, reason = experiment.condition, experiment.reason
    if run.interrupted:
        condition, reason = "Interrupted", f"resumable: `{run.resume_command()}`"
    folder = Path(output) if output else Path(workdir) / "report"
    try:
        return _write_files(folder, spec, condition, reason, trials)
    except OSError as err:
        raise InvalidInput(f"cannot write the report to {folder}: {err.strerror or err}; write it elsewhere with: "
                           f"katib-nas report {workdir} --output DIR") from None


def _write_files(folder: Path, spec: ExperimentSpec, condition: str, reason: str, trials: Sequence[TrialRow]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize_trials(trials, spec.objective)
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
    path = folder / "summary.md"
    path.write_text(summary_markdown(spec, condition, reason, trials, summary, arch, files))
    return path


def metric_value(trial: TrialRow, spec: ExperimentSpec, name: str) -> str:
    summary = trial.observation.get(name)
    return summary.value(spec.objective.strategy(name)) if summary else ""


def write_csv(path: Path, spec: ExperimentSpec, trials: Sequence[TrialRow]) -> None:
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


def best_architecture(best: TrialRow | None) -> Architecture | None:
    """The network the best trial stands for (the shared rule: a reported Best-Architecture first)."""
    if best is None:
        return None
    text = final_architecture(best.assignments, {name: s.latest for name, s in best.observation.items()})
    return None if text is None else decode(text)


def write_best(folder: Path, arch: Architecture, best: TrialRow, spec: ExperimentSpec) -> dict[str, str]:
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


def plot_objective(path: Path, spec: ExperimentSpec, trials: Sequence[TrialRow]) -> bool:
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


def latency_metric(spec: ExperimentSpec) -> str:
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


def plot_pareto(path: Path, spec: ExperimentSpec, trials: Sequence[TrialRow], latency: str) -> bool:
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


def summary_markdown(spec: ExperimentSpec, condition: str, reason: str, trials: Sequence[TrialRow],
                     summary: Summary, arch: Architecture | None, files: dict[str, str]) -> str:
    lines = [f"# {spec.name}", "",
             f"- Algorithm: `{spec.algorithm}`; objective: {spec.objective.type} `{spec.objective.metric}`"
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
            lines += ["Architecture:", "", "```", to_dict(arch)["text"], "```", ""]
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
    return "\n".join(lines) + "\n"


def non_finite_objectives(spec: ExperimentSpec, trials: Sequence[TrialRow]) -> list[str]:
    """Objective values, as reported, that read as NaN, an infinity or a number beyond float64's range."""
    values = [objective_value(t, spec.objective) for t in trials]
    return [v for v in values if v != UNAVAILABLE and (n := go_float_value(v)) is not None and not math.isfinite(n)]


def _ranked(spec: ExperimentSpec, trials: Sequence[TrialRow]) -> list[TrialRow]:
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
