"""The suggestion image's install step, replayed in a fresh venv (no Docker engine here):
it installs only the [suggestion] extra, carries no torch or kubernetes, and the server starts."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import REPO

DOCKERFILE = REPO / "suggestion" / "Dockerfile"


def dockerfile_steps() -> tuple[list[str], str, list[str]]:
    """(paths copied into /src, the pip install target, the entrypoint) as the Dockerfile states them."""
    text = DOCKERFILE.read_text()
    copies = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    target = re.search(r'^RUN pip install "([^"]+)"', text, re.M).group(1)
    entrypoint = re.search(r"^ENTRYPOINT \[(.*)\]", text, re.M).group(1)
    return copies, target, [part.strip().strip('"') for part in entrypoint.split(",")]


def test_dockerfile_is_slim_non_root_and_exposes_katib_port() -> None:
    text = DOCKERFILE.read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert "EXPOSE 6789" in text
    _, target, entrypoint = dockerfile_steps()
    assert target == ".[suggestion]"
    assert entrypoint == ["katib-nas", "serve"]


def test_install_step_in_fresh_venv_gives_a_working_server_without_torch(tmp_path: Path) -> None:
    copies, target, entrypoint = dockerfile_steps()
    context = tmp_path / "src"
    context.mkdir()
    for name in copies:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, context / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target],
                   cwd=context, check=True, timeout=600)
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
