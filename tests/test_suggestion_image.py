"""The suggestion image's install step, replayed in a fresh venv (no Docker engine here):
it installs only the [suggestion] extra, carries no torch or kubernetes, and the server starts."""

from __future__ import annotations

import re
import socket
import subprocess
import venv
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import REPO, build_context, dockerfile_steps

DOCKERFILE = REPO / "suggestion" / "Dockerfile"


def test_dockerfile_is_slim_non_root_and_exposes_katib_port() -> None:
    text = DOCKERFILE.read_text()
    assert text.startswith("#") and "FROM python:3.11-slim-bookworm" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert "EXPOSE 6789" in text
    _, target, entrypoint = dockerfile_steps(DOCKERFILE)
    assert target == ".[suggestion]"
    assert entrypoint == ["katib-nas", "serve"]


@pytest.mark.install
def test_install_step_in_fresh_venv_gives_a_working_server_without_torch(tmp_path: Path) -> None:
    context, target, entrypoint = build_context(DOCKERFILE, tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--constraint",
                    "constraints.txt", target], cwd=context, check=True, timeout=600)
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], check=True,
                               capture_output=True, text=True).stdout.lower()
    for heavy in ("torch", "kubernetes", "kubeflow-katib", "kfp"):
        assert f"\n{heavy}==" not in "\n" + installed, f"{heavy} must not be in the suggestion image"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([str(env_dir / "bin" / entrypoint[0]), *entrypoint[1:], "--host", "127.0.0.1",
                               "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="manager.v1beta1.Suggestion"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
