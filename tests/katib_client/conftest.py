"""A real `katib-nas serve` subprocess, reached only through kubeflow-katib's and grpc-health's stubs."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.runner.katib_messages import experiment_message
from katib_nas.runner.manifest import experiment_from_document

from ..conftest import REPO, load_yaml

HEALTH_SERVICE = "manager.v1beta1.Suggestion"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def katib_nas_command() -> list[str]:
    exe = Path(sys.executable).with_name("katib-nas")
    return [str(exe)] if exe.exists() else [shutil.which("katib-nas") or "katib-nas"]


@dataclass
class Server:
    process: subprocess.Popen
    address: str
    channel: grpc.Channel

    @property
    def suggestion(self) -> pb_grpc.SuggestionStub:
        return pb_grpc.SuggestionStub(self.channel)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel)

    def log(self) -> str:
        return self.process.stderr.read().decode() if self.process.stderr else ""


def start_server(extra: list[str] | None = None) -> Server:
    port = free_port()
    process = subprocess.Popen(katib_nas_command() + ["serve", "--host", "127.0.0.1", "--port", str(port)]
                               + (extra or []), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    return Server(process, f"127.0.0.1:{port}", channel)


def stop_server(server: Server) -> int:
    server.channel.close()
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=30)


@pytest.fixture
def server() -> Iterator[Server]:
    running = start_server()
    yield running
    stop_server(running)


def experiment_from_yaml(document: dict[str, Any]) -> pb.Experiment:
    return experiment_message(pb, experiment_from_document(document))


def example_experiment(name: str) -> pb.Experiment:
    return experiment_from_yaml(load_yaml(REPO / "examples" / name))


def trial(name: str, assignments: dict[str, str], condition: int, metrics: dict[str, str]) -> pb.Trial:
    result = pb.Trial(name=name)
    for key, value in assignments.items():
        result.spec.parameter_assignments.assignments.add(name=key, value=value)
    result.status.condition = condition
    for key, value in metrics.items():
        result.status.observation.metrics.add(name=key, value=value)
    return result
