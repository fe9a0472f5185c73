"""A real `katib-nas serve` subprocess on a loopback port, with its log read as it is written.

Tests wait for log lines (a call started, a signal received) instead of sleeping. The generous
`HANG_GUARD_SECONDS` only stops a broken test from hanging the suite; no test asserts on durations.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import grpc

HEALTH_SERVICE = "manager.v1beta1.Suggestion"
HANG_GUARD_SECONDS = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServeProcess:
    """The server process, a channel to it, and every log line it printed so far."""

    process: subprocess.Popen
    address: str
    channel: grpc.Channel
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # end of output
            self.changed.notify_all()

    def wait_for_log(self, text: str, count: int = 1) -> list[str]:
        """Block until `count` log lines contain `text`; those lines."""
        def matching() -> list[str]:
            return [line for line in self.lines if text in line]

        with self.changed:
            found = self.changed.wait_for(lambda: len(matching()) >= count or self.process.poll() is not None,
                                          timeout=HANG_GUARD_SECONDS)
            assert found and len(matching()) >= count, f"no {count} log line(s) with {text!r}:\n" + self.log()
            return matching()

    def log(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def stop(self) -> int:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=HANG_GUARD_SECONDS)


def start_serve(*extra: str) -> ServeProcess:
    """`katib-nas serve` on a free loopback port, ready (its channel connected) when this returns."""
    port = free_port()
    command = [sys.executable, "-m", "katib_nas.cli", "serve", "--port", str(port), *extra]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    server = ServeProcess(process, f"127.0.0.1:{port}", channel)
    threading.Thread(target=server._drain, daemon=True).start()
    server.wait_for_log("serving Suggestion and health")
    grpc.channel_ready_future(channel).result(timeout=HANG_GUARD_SECONDS)
    return server
