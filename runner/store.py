"""The run's state in one SQLite file: experiment, trials, assignments, observations and logs.

Every change is one transaction, written in WAL mode, so a run killed at any
moment (even by SIGKILL) reopens with every finished trial intact. A lock
file keeps a second runner off the same workdir. An existing state file is
checked (read-only) before it is used: an empty, damaged or foreign file is
refused with one line and left as it is, never taken for a new run. Reports
open the file read-only, so reading a run needs only read access.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from katib_nas.contract.errors import InvalidInput

from .metrics_collector import MetricLog, MetricSummary

DB_NAME = "state.sqlite"
LOCK_NAME = ".lock"
#: The suggestion service's log in a workdir.
SUGGESTION_LOG = "suggestion.log"
#: The workdir's folder of one folder per trial (its output log, metrics file and own files), and the report's.
TRIALS_FOLDER, REPORT_FOLDER = "trials", "report"
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
#: Free space below which a workdir's file system counts as full.
MIN_FREE_BYTES = 1 << 20
TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))
KEEP_ADVICE = ("it is left as it is: keep a copy, then move it aside to start the experiment again in this workdir, "
               "or restore it from a backup")


class StoreError(InvalidInput):
    """A workdir that cannot be used: locked by another run, or holding something else."""


class DiskFull(Exception):
    """A write failed for want of space (a full disk or quota): the path and the cause."""

    def __init__(self, path: Path | str, cause: str):
        super().__init__(f"no space left to write {path} ({cause})")
        self.path = path
        self.workdir: Path | None = None  # the run's workdir, once known


def as_disk_full(err: BaseException, database: Path) -> DiskFull | None:
    """The DiskFull an error stands for (SQLite's SQLITE_FULL on `database`, or ENOSPC/EDQUOT), or None."""
    if isinstance(err, DiskFull):
        return err
    if isinstance(err, sqlite3.Error) and getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return DiskFull(database, str(err))
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(err.filename or database.parent, err.strerror or str(err))
    return None


def no_space_left(path: Path) -> bool:
    """Whether the file system holding `path` has less than MIN_FREE_BYTES left for unprivileged writes."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES


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
        """Open (creating the schema in a new file); with lock=True, refuse a workdir another run holds. An
        existing file is checked first and refused (StoreError, file untouched) when empty, damaged or foreign."""
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot use {workdir} as the workdir: {err.strerror or err}") from None
        lock_fd = lock_workdir(workdir) if lock else None
        path = workdir / DB_NAME
        try:
            if path.exists():
                check_state_file(path)
            connection = sqlite3.connect(path, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            with connection:
                connection.executescript(SCHEMA)
        except BaseException:
            unlock_workdir(lock_fd)
            raise
        return cls(workdir, connection, lock_fd)

    @classmethod
    def open_existing(cls, workdir: Path) -> "Store":
        """Open a workdir that must already hold a run, read-only and without taking its lock (for reports)."""
        path = workdir / DB_NAME
        if not path.is_file():
            raise StoreError(f"{workdir} holds no katib-nas run (no {DB_NAME})")
        check_state_file(path)
        return cls(workdir, read_only(path), None)

    @property
    def path(self) -> Path:
        return self.workdir / DB_NAME

    def close(self) -> None:
        self.connection.close()
        unlock_workdir(self._lock_fd)
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

    def requeue(self, names: Iterable[str], message: str, logs: Mapping[str, str] | None = None) -> None:
        """Put unfinished trials back to Created so they run again (same name, same assignments), keeping the
        output of the attempt that was stopped (`logs`, by trial) as that attempt's log."""
        names = list(names)
        with self.connection:
            self.connection.executemany("UPDATE trials SET condition = 'Created', started_at = NULL, message = ? "
                                        "WHERE name = ?", [(message, name) for name in names])
            for name, text in (logs or {}).items():
                self.connection.execute("INSERT OR REPLACE INTO logs (trial, attempt, text) SELECT name, attempts, ? "
                                        "FROM trials WHERE name = ? AND attempts > 0", (text[-MAX_LOG_CHARS:], name))

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


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing next to the file when there is no write-ahead log to read
    (immutable), and reads the log when there is one (a live or killed run)."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?{mode}", uri=True, timeout=30)


def check_state_file(path: Path) -> None:
    """StoreError (one line naming the file and what to do) unless `path` is a readable katib-nas state file.

    Read-only: a damaged file is left exactly as it was."""
    if path.stat().st_size == 0:
        raise StoreError(f"{path} is empty, so the run in {path.parent} cannot be read or resumed; {KEEP_ADVICE}")
    try:
        with contextlib.closing(read_only(path)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} is damaged ({err}), so the run in {path.parent} cannot be read or resumed; "
                         f"{KEEP_ADVICE}") from None
    if problems != ["ok"]:
        raise StoreError(f"{path} is damaged ({first_problem(problems)}), so the run in {path.parent} cannot be "
                         f"read or resumed; {KEEP_ADVICE}")
    missing = [table for table in TABLES if table not in tables]
    if missing:
        raise StoreError(f"{path} is not a katib-nas state file (it has no {missing[0]} table); {KEEP_ADVICE}")


def first_problem(problems: list[str]) -> str:
    """quick_check's first finding on one line (it reports several lines, headed "*** in database main ***")."""
    lines = [line.strip() for problem in problems for line in problem.splitlines()]
    return next((line for line in lines if line and not line.startswith("***")), "unreadable")


def lock_workdir(workdir: Path) -> int:
    """Take the workdir's lock (the file descriptor holding it); StoreError naming the pid that holds it."""
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


def unlock_workdir(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def runner_pid(workdir: Path) -> int | None:
    """The pid of the runner holding the workdir's lock, or None when no runner holds it (read-only check)."""
    try:
        fd = os.open(workdir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
