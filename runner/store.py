"""The run's state in one SQLite file: experiment, trials, assignments, observations and logs.

Every change is one transaction, written in WAL mode, so a run killed at any
moment (even by SIGKILL) reopens with every finished trial intact. A lock
file keeps a second runner off the same workdir.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from katib_nas.contract.errors import InvalidInput

from .metrics_collector import MetricLog, MetricSummary

DB_NAME = "state.sqlite"
LOCK_NAME = ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    source TEXT NOT NULL,
    budget TEXT NOT NULL,
    trial_args TEXT NOT NULL,
    cwd TEXT NOT NULL,
    condition TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    suggestion_settings TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    completed_at REAL
);
CREATE TABLE IF NOT EXISTS trials (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    condition TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    exit_code INTEGER,
    message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS assignments (
    trial TEXT NOT NULL REFERENCES trials(name),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (trial, name)
);
CREATE TABLE IF NOT EXISTS observations (
    trial TEXT NOT NULL REFERENCES trials(name),
    metric TEXT NOT NULL,
    min TEXT NOT NULL,
    max TEXT NOT NULL,
    latest TEXT NOT NULL,
    PRIMARY KEY (trial, metric)
);
CREATE TABLE IF NOT EXISTS metric_logs (
    trial TEXT NOT NULL REFERENCES trials(name),
    position INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    metric TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    trial TEXT NOT NULL REFERENCES trials(name),
    attempt INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (trial, attempt)
);
"""
MAX_LOG_CHARS = 1_000_000


class StoreError(InvalidInput):
    """A workdir that cannot be used: locked by another run, or holding something else."""


@dataclass
class ExperimentRow:
    name: str
    document: dict[str, Any]
    source: str
    budget: dict[str, int | None]
    trial_args: list[str]
    cwd: str
    condition: str
    reason: str
    message: str
    suggestion_settings: list[tuple[str, str]]
    created_at: float
    completed_at: float | None


@dataclass
class TrialRow:
    name: str
    seq: int
    condition: str
    assignments: dict[str, str]
    labels: dict[str, str]
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    attempts: int = 0
    observation: dict[str, MetricSummary] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.started_at


class Store:
    """Opened on a workdir; all reads and writes go through it (from one thread)."""

    def __init__(self, workdir: Path, connection: sqlite3.Connection, lock_fd: int | None):
        self.workdir = workdir
        self.connection = connection
        self._lock_fd = lock_fd

    @staticmethod
    def exists(workdir: Path) -> bool:
        return (workdir / DB_NAME).is_file()

    @classmethod
    def open(cls, workdir: Path, lock: bool = True) -> "Store":
        """Open (creating the schema if needed); with lock=True, refuse a workdir another run holds."""
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot use {workdir} as the workdir: {err.strerror or err}") from None
        lock_fd = _lock(workdir) if lock else None
        connection = sqlite3.connect(workdir / DB_NAME, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        with connection:
            connection.executescript(SCHEMA)
        return cls(workdir, connection, lock_fd)

    @classmethod
    def open_existing(cls, workdir: Path) -> "Store":
        """Open a workdir that must already hold a run, without taking its lock (for reports)."""
        if not cls.exists(workdir):
            raise StoreError(f"{workdir} holds no katib-nas run (no {DB_NAME})")
        return cls.open(workdir, lock=False)

    def close(self) -> None:
        self.connection.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # experiment ---------------------------------------------------------------------------------------------
    def create_experiment(self, name: str, document: dict[str, Any], source: str, budget: dict[str, int | None],
                          trial_args: Sequence[str], cwd: str) -> None:
        """Record the experiment, replacing one that never got a trial."""
        with self.connection:
            self.connection.execute("DELETE FROM experiment")
            self.connection.execute(
                "INSERT INTO experiment (id, name, document, source, budget, trial_args, cwd, condition, created_at) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, 'Created', ?)",
                (name, json.dumps(document), source, json.dumps(budget), json.dumps(list(trial_args)), cwd,
                 time.time()))

    def experiment(self) -> ExperimentRow | None:
        row = self.connection.execute(
            "SELECT name, document, source, budget, trial_args, cwd, condition, reason, message, "
            "suggestion_settings, created_at, completed_at FROM experiment WHERE id = 1").fetchone()
        if row is None:
            return None
        return ExperimentRow(row[0], json.loads(row[1]), row[2], json.loads(row[3]), json.loads(row[4]), row[5],
                             row[6], row[7], row[8], [tuple(p) for p in json.loads(row[9])], row[10], row[11])

    def update_run_config(self, budget: dict[str, int | None], trial_args: Sequence[str]) -> None:
        with self.connection:
            self.connection.execute("UPDATE experiment SET budget = ?, trial_args = ? WHERE id = 1",
                                    (json.dumps(budget), json.dumps(list(trial_args))))

    def set_experiment_condition(self, condition: str, reason: str = "", message: str = "") -> None:
        completed = time.time() if condition in ("Succeeded", "Failed") else None
        with self.connection:
            self.connection.execute("UPDATE experiment SET condition = ?, reason = ?, message = ?, completed_at = ? "
                                    "WHERE id = 1", (condition, reason, message, completed))

    # trials -------------------------------------------------------------------------------------------------
    def add_trials(self, trials: Iterable[tuple[str, dict[str, str], dict[str, str]]],
                   settings: Sequence[tuple[str, str]]) -> None:
        """New trials (condition Created) and the suggestion's updated settings, in one transaction."""
        now = time.time()
        with self.connection:
            (next_seq,) = self.connection.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM trials").fetchone()
            for offset, (name, assignments, labels) in enumerate(trials):
                self.connection.execute("INSERT INTO trials (name, seq, condition, labels, created_at) "
                                        "VALUES (?, ?, 'Created', ?, ?)",
                                        (name, next_seq + offset, json.dumps(labels), now))
                self.connection.executemany("INSERT INTO assignments (trial, name, value) VALUES (?, ?, ?)",
                                            [(name, key, value) for key, value in assignments.items()])
            self.connection.execute("UPDATE experiment SET suggestion_settings = ?, condition = 'Running' "
                                    "WHERE id = 1", (json.dumps([list(p) for p in settings]),))

    def mark_running(self, name: str, started_at: float) -> None:
        with self.connection:
            self.connection.execute("UPDATE trials SET condition = 'Running', started_at = ?, completed_at = NULL, "
                                    "exit_code = NULL, message = '', attempts = attempts + 1 WHERE name = ?",
                                    (started_at, name))

    def finish_trial(self, name: str, condition: str, exit_code: int | None, message: str, completed_at: float,
                     logs: Sequence[MetricLog], summaries: Iterable[MetricSummary], log_text: str) -> None:
        """Record a finished trial: condition, metric logs, observation and its output, atomically."""
        with self.connection:
            (attempt,) = self.connection.execute("SELECT attempts FROM trials WHERE name = ?", (name,)).fetchone()
            self.connection.execute("UPDATE trials SET condition = ?, exit_code = ?, message = ?, completed_at = ? "
                                    "WHERE name = ?", (condition, exit_code, message, completed_at, name))
            self.connection.execute("DELETE FROM metric_logs WHERE trial = ?", (name,))
            self.connection.execute("DELETE FROM observations WHERE trial = ?", (name,))
            self.connection.executemany(
                "INSERT INTO metric_logs (trial, position, timestamp, metric, value) VALUES (?, ?, ?, ?, ?)",
                [(name, i, log.timestamp, log.name, log.value) for i, log in enumerate(logs)])
            self.connection.executemany(
                "INSERT INTO observations (trial, metric, min, max, latest) VALUES (?, ?, ?, ?, ?)",
                [(name, s.name, s.min, s.max, s.latest) for s in summaries])
            self.connection.execute("INSERT OR REPLACE INTO logs (trial, attempt, text) VALUES (?, ?, ?)",
                                    (name, attempt, log_text[-MAX_LOG_CHARS:]))

    def requeue(self, names: Iterable[str], message: str) -> None:
        """Put unfinished trials back to Created so they run again (same name, same assignments)."""
        with self.connection:
            self.connection.executemany("UPDATE trials SET condition = 'Created', started_at = NULL, message = ? "
                                        "WHERE name = ?", [(message, name) for name in names])

    def trials(self) -> list[TrialRow]:
        rows = self.connection.execute(
            "SELECT name, seq, condition, labels, created_at, started_at, completed_at, exit_code, message, attempts "
            "FROM trials ORDER BY seq").fetchall()
        trials = {row[0]: TrialRow(row[0], row[1], row[2], {}, json.loads(row[3]), row[4], row[5], row[6], row[7],
                                   row[8], row[9]) for row in rows}
        for trial, name, value in self.connection.execute("SELECT trial, name, value FROM assignments"):
            trials[trial].assignments[name] = value
        for trial, metric, low, high, latest in self.connection.execute(
                "SELECT trial, metric, min, max, latest FROM observations ORDER BY rowid"):
            trials[trial].observation[metric] = MetricSummary(metric, low, high, latest)
        return list(trials.values())

    def metric_logs(self) -> dict[str, list[MetricLog]]:
        """Every finished trial's metric logs, in the order they were reported."""
        logs: dict[str, list[MetricLog]] = {}
        for trial, timestamp, metric, value in self.connection.execute(
                "SELECT trial, timestamp, metric, value FROM metric_logs ORDER BY trial, position"):
            logs.setdefault(trial, []).append(MetricLog(timestamp, metric, value))
        return logs

    def trial_log(self, name: str) -> str:
        row = self.connection.execute("SELECT text FROM logs WHERE trial = ? ORDER BY attempt DESC LIMIT 1",
                                      (name,)).fetchone()
        return row[0] if row else ""


def _lock(workdir: Path) -> int:
    fd = os.open(workdir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise StoreError(f"{workdir} is in use by another katib-nas run (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
