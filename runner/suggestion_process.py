"""Run `katib-nas serve` on a free loopback port and call it as Katib's controller does.

Errors the service answers with INVALID_ARGUMENT (or UNKNOWN, which Katib
treats the same way) are the user's to fix and become one-line
`SuggestionRejected` errors; anything else is a `SuggestionFailure`. A server
the runner owns that exits is started again (`restart`), as Katib's Deployment
restarts a suggestion pod: the algorithms keep no state between calls.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import HEALTH_SERVICE, api_pb2, api_pb2_grpc

from .trial_processes import STOP_GRACE, dying_with_parent

CALL_TIMEOUT = 60.0  # Katib's suggestion client deadline
STARTUP_TIMEOUT = 60.0
#: After a failed call, how long to wait for the server process to show whether it died.
EXIT_WAIT = 2.0
#: Times one run starts a dead suggestion server again; a server that keeps dying (a request it cannot survive)
#: then ends the run, its trials saved.
MAX_RESTARTS = 3


class SuggestionRejected(InvalidInput):
    """The suggestion service refused the experiment (INVALID_ARGUMENT)."""


class SuggestionFailure(RuntimeError):
    """The suggestion service could not start, or failed a call for a reason other than bad input."""


class SuggestionServerExited(SuggestionFailure):
    """The suggestion server the runner started exited before answering; `restart` starts it again."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SuggestionClient:
    """The runner's client of the suggestion service: a `katib-nas serve` subprocess it starts and owns (a context
    manager), or one already running that it connects to."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.stub: api_pb2_grpc.SuggestionStub | None = None
        self.address = ""
        self.restarts = 0

    def __enter__(self) -> "SuggestionClient":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def connect(cls, address: str, log_path: Path) -> "SuggestionClient":
        """Use a suggestion service that is already running at `address` (the runner does not own it)."""
        service = cls(log_path)
        service.address = address
        service.channel = grpc.insecure_channel(address)
        service.stub = api_pb2_grpc.SuggestionStub(service.channel)
        return service

    def start(self) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        command = [sys.executable, "-m", "katib_nas.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--grace", "5"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(dying_with_parent(command), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = api_pb2_grpc.SuggestionStub(self.channel)
        self._wait_healthy()

    def restart(self) -> None:
        """Start the exited server again on a new port; `restarts` counts how often (the caller holds the limit)."""
        self.restarts += 1
        self.stop()
        self.start()

    def _wait_healthy(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise SuggestionFailure(f"the suggestion service exited with code {self.process.returncode} at "
                                        f"startup: {self._last_log_line()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SuggestionFailure(f"the suggestion service did not become healthy within "
                                        f"{STARTUP_TIMEOUT:.0f} s; see {self.log_path}")
            time.sleep(0.05)

    def validate(self, experiment: api_pb2.Experiment) -> None:
        """ValidateAlgorithmSettings; UNIMPLEMENTED counts as valid, as in Katib."""
        try:
            self.stub.ValidateAlgorithmSettings(  # type: ignore[union-attr]
                api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=CALL_TIMEOUT)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            raise self._error("ValidateAlgorithmSettings", err) from None

    def get_suggestions(self, request: api_pb2.GetSuggestionsRequest) -> api_pb2.GetSuggestionsReply:
        """GetSuggestions; an answer with the wrong number of assignments is an error."""
        try:
            reply = self.stub.GetSuggestions(request, timeout=CALL_TIMEOUT)  # type: ignore[union-attr]
        except grpc.RpcError as err:
            raise self._error("GetSuggestions", err) from None
        if len(reply.parameter_assignments) != request.current_request_number:
            raise SuggestionFailure(f"GetSuggestions answered {len(reply.parameter_assignments)} assignments for "
                                    f"{request.current_request_number} requested")
        return reply

    def _error(self, method: str, err: grpc.RpcError) -> Exception:
        details = " ".join((err.details() or "").split())
        if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN):
            return SuggestionRejected(f"the suggestion service rejected the experiment: {details}")
        if self._exited():
            return SuggestionServerExited(f"the suggestion service exited ({_exit_text(self.process.returncode)}) "
                                          f"before answering {method}; its log: {self.log_path}")
        return SuggestionFailure(f"{method} failed with {err.code().name}: {details}")

    def _exited(self) -> bool:
        """Whether the server process has exited; a connection it dropped as it died is given time to show."""
        if self.process is None:
            return False
        try:
            self.process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(no output)"


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
