"""Trial subprocesses: start one in its own session, learn when it ends, stop it cleanly.

Each trial runs in a new session (so a terminal Ctrl-C reaches only the
runner, which then stops trials itself) and, where util-linux `setpriv` is
available, dies with the runner (parent-death signal), so a runner killed
with SIGKILL leaves no orphans.
A waiter thread per trial puts a `Finished` event on a queue the
controller blocks on.
"""

from __future__ import annotations

import errno
import functools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

#: Seconds a process the runner stops (trials, torchrun's workers, the suggestion server) gets between SIGTERM
#: and SIGKILL.
STOP_GRACE = 10.0
#: How util-linux setpriv's line starts when it cannot execute the program it was given.
SETPRIV_EXEC_FAILED = "setpriv: failed to execute "


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """argv run through util-linux `setpriv --pdeathsig KILL`, so it dies when the runner dies.

    The signal is set in the child by an exec'd helper rather than a preexec_fn: forking a process that
    runs gRPC and then running Python code in the child can abort in gRPC's fork handlers, while the
    vfork path subprocess takes without a preexec_fn runs none. Without setpriv (not Linux) the
    argv is returned unchanged.
    """
    helper = _setpriv()
    if helper:
        _check_executable_format(argv[0])
    return [helper, "--pdeathsig", "KILL", "--", *argv] if helper else list(argv)


def _check_executable_format(program: str) -> None:
    """OSError(ENOEXEC), as the exec without setpriv raises it, for a file the kernel cannot execute: setpriv
    (execvp) would run it with /bin/sh instead, which neither a container nor the runner without it does."""
    path = shutil.which(program) if "/" not in program else program
    if path is None:
        return  # setpriv names a program it cannot find itself
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError:
        return
    if not start.startswith((b"#!", b"\x7fELF")):
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), program)


def exec_failure(exit_code: int, output: str) -> str | None:
    """'cannot start PROGRAM: REASON' when setpriv could not execute the trial's program, else None.

    The runner sees such a failure only as setpriv's exit code (126 or 127) and its line in the trial's output.
    """
    if exit_code not in (126, 127) or not output.startswith(SETPRIV_EXEC_FAILED):
        return None
    program, _, reason = output[len(SETPRIV_EXEC_FAILED):].splitlines()[0].rpartition(": ")
    return f"cannot start {program}: {reason}" if program else None


@dataclass(frozen=True)
class Finished:
    """A trial process ended: its exit code (negative: killed by that signal) and when."""

    trial: str
    exit_code: int
    ended_at: float


class TrialProcess:
    """One running trial; output (stdout and stderr) goes to its log file."""

    def __init__(self, trial: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: Path,
                 events: "queue.Queue[Finished]"):
        self.trial = trial
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ)
        environment.update(env)
        environment["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log:
            self.started_at = time.time()
            self.process = subprocess.Popen(dying_with_parent(argv), cwd=cwd, env=environment,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._thread = threading.Thread(target=self._wait, args=(events,), name=f"wait-{trial}", daemon=True)
        self._thread.start()

    def _wait(self, events: "queue.Queue[Finished]") -> None:
        code = self.process.wait()
        events.put(Finished(self.trial, code, time.time()))

    def signal_group(self, signum: int) -> None:
        """Signal the trial and every process it started."""
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def stop_all(processes: Sequence[TrialProcess], grace: float = STOP_GRACE) -> None:
    """SIGTERM every trial, wait up to `grace` seconds, then SIGKILL what is left."""
    for trial in processes:
        trial.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for trial in processes:
        remaining = max(deadline - time.monotonic(), 0.0)
        try:
            trial.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            pass
    for trial in processes:
        trial.signal_group(signal.SIGKILL)
        trial.process.wait()
