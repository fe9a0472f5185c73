"""The local experiment loop: Katib's controller, one machine, one process.

Each turn: read the trials from the store, decide whether the experiment is
over (goal, maxFailedTrialCount, maxTrialCount), ask the suggestion service
for as many trials as there are free parallel slots, render and start them,
then wait for a trial to end and record its metrics. Trials are written to
the store before they start and after they end, so the loop can be killed
at any point and resumed.

With spec.earlyStopping (medianstop), each trial gets Katib's stop rule when
it starts and its output is read as it grows, as Katib's metrics collector
reads it; a trial the rule stops is ended and recorded as EarlyStopped with
the metrics it reported so far.
"""

from __future__ import annotations

import math
import queue
import random
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2

from . import katib_messages
from .manifest import ExperimentSpec
from .metrics_collector import MetricsError, Pattern, compile_filters, go_float, parse_json, parse_text, rfc3339_nanos
from .progress import ProgressView
from .status import (
    Outcome,
    RuleProgress,
    Summary,
    median_stop_rule,
    objective_value,
    outcome,
    summarize_trials,
    trials_to_request,
)
from .store import MAX_LOG_CHARS, TRIALS_FOLDER, DiskFull, Store, TrialRow, as_disk_full, no_space_left
from .suggestion_process import MAX_RESTARTS, SuggestionClient, SuggestionFailure, SuggestionServerExited
from .trial_output import MAX_LINE_BYTES, MAX_METRIC_LOGS, Collected, LineReader, collect_file, read_tail
from .trial_processes import STOP_GRACE, Finished, TrialProcess, exec_failure, stop_all
from .trial_template import TrialCommand, build_command

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Katib's random trial-name suffix characters
TICK_SECONDS = 0.5
INTERRUPTED = "interrupted; runs again on --resume"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A trial's output, under WORKDIR/trials/NAME; an earlier attempt's is kept as ATTEMPT_LOG.format(attempt).
OUTPUT_LOG = "output.log"
ATTEMPT_LOG = "output.attempt-{}.log"
#: Bytes of a running trial's output read per tick for its stop rule (the rest is read at the next ticks).
WATCH_BYTES_PER_TICK = 64 << 20


class StartDirectoryGone(InvalidInput):
    """The directory trials run in (where the run was started) no longer exists."""

    def __init__(self, cwd: str):
        super().__init__(f"trials run in {cwd}, the directory the run was started from, which no longer exists; "
                         f"recreate it (mkdir -p {cwd})")


class Interrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM; running trials were stopped and requeued."""

    def __init__(self, workdir: Path | None = None):
        super().__init__(f"interrupted (workdir {workdir})")
        self.workdir = workdir


@dataclass
class TrialWatch:
    """A running trial's output read as it grows, with its progress against the stop rule."""

    progress: RuleProgress
    reader: LineReader
    file_format: str
    filters: list[Pattern]

    def new_values(self) -> list[float]:
        """Finite objective values in the complete lines written since the last call (a bounded amount per call).
        NaN and infinities are not measurements: they count toward no rule."""
        metric = [self.progress.rule.metric]
        values: list[float] = []
        try:
            for lines in self.reader.batches(WATCH_BYTES_PER_TICK):
                logs = parse_text(lines, metric, self.filters) if self.file_format == "TEXT" else parse_json(lines,
                                                                                                         metric)
                values += [n for log in logs if (n := go_float(log.value)) is not None and math.isfinite(n)]
        except (OSError, MetricsError):
            pass
        return values


@dataclass(frozen=True)
class LoopConfig:
    trial_args: tuple[str, ...]
    cwd: str
    stop_grace: float = STOP_GRACE


class Controller:
    """Drives one experiment to completion (or interruption) against a started suggestion service."""

    def __init__(self, spec: ExperimentSpec, store: Store, service: SuggestionClient, config: LoopConfig,
                 view: ProgressView):
        self.spec = spec
        self.store = store
        self.service = service
        self.config = config
        self.view = view
        self.events: queue.Queue[Finished] = queue.Queue()
        self.running: dict[str, TrialProcess] = {}
        self.watches: dict[str, TrialWatch] = {}
        self.histories: dict[str, list[float]] = {}
        self.trials_dir = store.workdir / TRIALS_FOLDER

    def run(self) -> Outcome:
        """Run until the experiment completes; raises Interrupted on Ctrl-C or SIGTERM (further ones are ignored
        while running trials are stopped and saved).

        SIGINT gets the handler explicitly: a runner started in the background by a shell without job control
        inherits SIGINT ignored, and `kill -INT` must still stop it cleanly."""
        previous = {signum: signal.signal(signum, _raise_interrupt) for signum in STOP_SIGNALS}
        try:
            return self._loop()
        except KeyboardInterrupt:
            _ignore_stop_signals()
            self._stop_running("Created", INTERRUPTED)
            raise Interrupted() from None
        except BaseException as err:
            _ignore_stop_signals()
            full = as_disk_full(err, self.store.path)
            try:
                self._stop_running("Created", "the runner stopped on an error; runs again on --resume")
            except (sqlite3.Error, OSError):
                if full is None:
                    raise  # with a full disk the state cannot record it: resume requeues trials left Running
            if full is not None:
                raise full from None
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self) -> Outcome:
        while True:
            trials = self.store.trials()
            summary = summarize_trials(trials, self.spec.objective)
            finished = outcome(summary, self.spec)
            if finished is not None:
                self._stop_running("Killed", f"stopped: {finished.reason}")
                self.store.set_experiment_condition(finished.condition, finished.reason, finished.message)
                self.view.update(summarize_trials(self.store.trials(), self.spec.objective))
                return finished
            wanted = trials_to_request(summary, self.spec)
            if wanted > 0:
                self._request(trials, wanted)
            self._launch_created()
            self._wait_for_trial(summary)

    # suggestions --------------------------------------------------------------------------------------------
    def _request(self, trials: Sequence[TrialRow], count: int) -> None:
        experiment = self.store.experiment()
        settings = experiment.suggestion_settings if experiment else []
        reply = self._suggestions(katib_messages.suggestions_request(api_pb2, self.spec, settings, trials, count))
        taken = {trial.name for trial in trials}
        new = []
        for entry in reply.parameter_assignments:
            name = entry.trial_name or self._new_name(taken)
            taken.add(name)
            assignments = {a.name: a.value for a in entry.assignments}
            self._command(name, assignments)  # render now: a template error must not leave trials behind
            new.append((name, assignments, dict(entry.labels)))
        updates = [(s.name, s.value) for s in reply.algorithm.algorithm_settings]
        self.store.add_trials(new, katib_messages.merge_settings(settings, updates))

    def _suggestions(self, request: api_pb2.GetSuggestionsRequest) -> api_pb2.GetSuggestionsReply:
        """GetSuggestions, starting a dead server again (as Katib restarts the pod) while restarts are left."""
        while True:
            try:
                return self.service.get_suggestions(request)
            except SuggestionServerExited as err:
                if self.service.restarts >= MAX_RESTARTS:
                    raise SuggestionFailure(f"{err} (started again {MAX_RESTARTS} times already)") from None
                self.service.restart()
                self.view.message(f"{err}; started it again (restart {self.service.restarts} of {MAX_RESTARTS})")

    def _new_name(self, taken: set[str]) -> str:
        while True:
            name = f"{self.spec.name}-{''.join(random.choices(NAME_ALPHABET, k=8))}"
            if name not in taken:
                return name

    def _command(self, name: str, assignments: dict[str, str]) -> TrialCommand:
        return build_command(self.spec, name, assignments, self.config.trial_args, self.trials_dir / name)

    # trials -------------------------------------------------------------------------------------------------
    def _launch_created(self) -> None:
        for trial in self.store.trials():
            if len(self.running) >= self.spec.parallel_trial_count:
                return
            if trial.condition == "Created" and trial.name not in self.running:
                self._start(trial)

    def _start(self, trial: TrialRow) -> None:
        command = self._command(trial.name, trial.assignments)
        trial_dir = self.trials_dir / trial.name
        if not Path(self.config.cwd).is_dir():
            raise StartDirectoryGone(self.config.cwd)
        if command.metrics_file:
            stale = Path(command.metrics_file)
            stale.unlink(missing_ok=True)
            stale.parent.mkdir(parents=True, exist_ok=True)
        keep_earlier_output(trial_dir, trial.attempts)
        try:
            process = TrialProcess(trial.name, command.argv, command.env, self.config.cwd,
                                   trial_dir / OUTPUT_LOG, self.events)
        except OSError as err:
            if not Path(self.config.cwd).is_dir():
                raise StartDirectoryGone(self.config.cwd) from None
            if as_disk_full(err, self.store.path):
                raise
            now = time.time()
            self.store.mark_running(trial.name, now)
            message = f"cannot start {command.argv[0]}: {err.strerror or err}"
            self.store.finish_trial(trial.name, "Failed", None, message, now, [], [], "")
            return
        self.running[trial.name] = process
        self.store.mark_running(trial.name, process.started_at)
        self._watch(trial.name, process)

    # early stopping -----------------------------------------------------------------------------------------
    def _watch(self, name: str, process: TrialProcess) -> None:
        """Give a starting trial Katib's medianstop rule, computed from the trials that succeeded so far."""
        if self.spec.early_stopping is None:
            return
        histories = [self._objective_history(t.name) for t in self.store.trials() if t.condition == "Succeeded"]
        rule = median_stop_rule(self.spec.early_stopping, self.spec.objective, histories)
        if rule is None:
            return
        collector = self.spec.collector
        source = process.log_path if collector.kind == "StdOut" else self._metrics_path(name)
        wanted = (rule.metric.encode(),) if collector.format == "TEXT" else ()
        self.watches[name] = TrialWatch(RuleProgress(rule, self.spec.objective.maximize), LineReader(source, wanted),
                                        collector.format, compile_filters(collector.filters))

    def _objective_history(self, trial: str) -> list[float]:
        """A succeeded trial's objective values in the order of their timestamps (Katib's observation log)."""
        if trial not in self.histories:
            rows = self.store.connection.execute(
                "SELECT timestamp, value FROM metric_logs WHERE trial = ? AND metric = ? ORDER BY position",
                (trial, self.spec.objective.metric)).fetchall()
            ordered = sorted(rows, key=lambda row: rfc3339_nanos(row[0]) or 0)
            self.histories[trial] = [n for _, value in ordered if (n := go_float(value)) is not None
                                     and math.isfinite(n)]
        return self.histories[trial]

    def _apply_stop_rules(self) -> None:
        for name, watch in list(self.watches.items()):
            process = self.running.get(name)
            if process is None or not process.running:
                continue
            if any(watch.progress.add(value) for value in watch.new_values()):
                self._early_stop(name, process, watch.progress.reason())

    def _early_stop(self, name: str, process: TrialProcess, reason: str) -> None:
        """End the trial as Katib's collector does (terminate the training process) and record it."""
        stop_all([process], self.config.stop_grace)
        self.running.pop(name, None)
        self.watches.pop(name, None)
        ended = Finished(name, process.process.returncode, time.time())
        line = self._record(ended, process, early_stopped=reason)
        self.view.update(summarize_trials(self.store.trials(), self.spec.objective), line)

    def _wait_for_trial(self, summary: Summary) -> None:
        try:
            event = self.events.get(timeout=TICK_SECONDS)
        except queue.Empty:
            self._apply_stop_rules()
            self.view.update(summary)
            return
        self._apply_stop_rules()
        process = self.running.pop(event.trial, None)
        self.watches.pop(event.trial, None)
        if process is None:
            return
        line = self._record(event, process)
        self.view.update(summarize_trials(self.store.trials(), self.spec.objective), line)

    def _record(self, event: Finished, process: TrialProcess, early_stopped: str = "") -> str:
        if event.exit_code != 0 and not early_stopped and no_space_left(self.store.workdir):
            # Its output or metrics could not be written: not the trial's failure. It stays Running in the
            # state, so a resume runs it again.
            raise DiskFull(process.log_path, f"the trial exited with code {event.exit_code} while the disk was full")
        log_text = read_tail(process.log_path, MAX_LOG_CHARS)
        metrics = self.spec.objective.metric_names
        collector = self.spec.collector
        message = ""
        try:
            source = process.log_path if collector.kind == "StdOut" else self._metrics_path(event.trial)
            collected = collect_file(source, metrics, collector.filters, collector.format)
            logs, summaries = collected.logs, collected.observation.summaries()
            self._report_bounds(event.trial, collected)
        except MetricsError as err:
            logs, summaries, message = [], {}, f"metrics collection failed: {err}"
        available = metrics[0] in summaries and summaries[metrics[0]].latest != "unavailable"
        if early_stopped:
            condition, message = "EarlyStopped", early_stopped
        elif event.exit_code != 0:
            condition = "Failed"
            message = message or exec_failure(event.exit_code, log_text) or _exit_message(event.exit_code)
        elif message:
            condition = "Failed"
        else:
            condition = "Succeeded" if available else "MetricsUnavailable"
            message = "" if available else f"objective {metrics[0]} not found in the trial's output"
        self.store.finish_trial(event.trial, condition, event.exit_code, message, event.ended_at, logs,
                                summaries.values(), log_text)
        trial = next(t for t in self.store.trials() if t.name == event.trial)
        value = objective_value(trial, self.spec.objective)
        detail = f"{metrics[0]}={value}" if condition == "Succeeded" else message
        if condition == "Failed" and event.exit_code > 0 and message == _exit_message(event.exit_code):
            detail = with_last_line(detail, log_text)  # the trial's own reason, on the line the user reads
        return f"trial {event.trial} {_condition_words(condition)} in {event.ended_at - process.started_at:.1f}s: {detail}"

    def _report_bounds(self, trial: str, collected: Collected) -> None:
        """One line for what the collector's bounds left out of a trial's output, if anything."""
        count = collected.skipped_lines
        if count:
            lines, verbs = ("line", "mentions a metric was") if count == 1 else ("lines", "mention a metric were")
            self.view.message(f"trial {trial}: {count} output {lines} longer than {MAX_LINE_BYTES >> 20} MiB that "
                              f"{verbs} not read for metrics")
        if collected.dropped_logs:
            self.view.message(f"trial {trial}: its first {MAX_METRIC_LOGS} metric values are kept in the observation "
                              f"log, {collected.dropped_logs} more are not (min, max and latest cover all)")

    def _metrics_path(self, trial: str) -> Path:
        return self.trials_dir / trial / "metrics" / self.spec.collector.path.lstrip("/")

    def _stop_running(self, condition: str, message: str) -> None:
        """Stop every running trial; record them as `condition` (Created: run again on resume)."""
        processes = list(self.running.values())
        if not processes:
            return
        self.view.message(f"stopping {len(processes)} running trial(s)...")
        stop_all(processes, self.config.stop_grace)
        names = [p.trial for p in processes]
        if condition == "Created":
            self.store.requeue(names, message, {p.trial: read_tail(p.log_path, MAX_LOG_CHARS) for p in processes})
        else:
            now = time.time()
            for process in processes:
                self.store.finish_trial(process.trial, condition, process.process.returncode, message, now, [], [],
                                        read_tail(process.log_path, MAX_LOG_CHARS))
        self.running.clear()
        self.watches.clear()


def requeue_unfinished(store: Store) -> list[str]:
    """On resume: trials left Running by a killed runner, or Created, go back to Created."""
    names = [t.name for t in store.trials() if t.condition == "Running"]
    logs = {name: read_tail(path, MAX_LOG_CHARS) for name in names
            if (path := store.workdir / TRIALS_FOLDER / name / OUTPUT_LOG).is_file()}
    store.requeue(names, INTERRUPTED, logs)
    return names


def keep_earlier_output(trial_dir: Path, attempts: int) -> None:
    """Before a trial runs again: its output.log, from attempt `attempts`, becomes output.attempt-N.log (an
    existing one, from a start that failed before it was counted, is not replaced)."""
    log, kept = trial_dir / OUTPUT_LOG, trial_dir / ATTEMPT_LOG.format(attempts)
    if attempts > 0 and log.is_file() and not kept.exists():
        log.rename(kept)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt()


def _ignore_stop_signals() -> None:
    """While the runner stops its trials and saves them (up to the stop grace), a further Ctrl-C or SIGTERM must
    not cut that short: the run would end without saving them or printing how to continue."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _condition_words(condition: str) -> str:
    return {"EarlyStopped": "early stopped", "MetricsUnavailable": "metrics unavailable"}.get(condition,
                                                                                               condition.lower())


#: Longest part of a failed trial's last output line shown on the runner's line for the trial.
MAX_SHOWN_LINE = 300


def with_last_line(detail: str, output: str) -> str:
    """`detail` ("exited with code 2") followed by the trial's last non-empty output line, which says why (the
    trial's error line, a traceback's exception), cut to MAX_SHOWN_LINE characters; `detail` alone when the
    output is empty or its last line is `detail` already."""
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    if not last or last in detail:
        return detail
    return f"{detail}: {last if len(last) <= MAX_SHOWN_LINE else last[:MAX_SHOWN_LINE - 3] + '...'}"


def _exit_message(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
