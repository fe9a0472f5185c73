"""`katib-nas serve` listens on loopback unless told otherwise; the suggestion image tells it otherwise."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from katib_nas.cli.main import build_parser

from .conftest import REPO
from .serve_process import HANG_GUARD_SECONDS, start_serve


def test_default_host_is_loopback_on_a_developer_machine() -> None:
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"


def test_the_suggestion_image_listens_on_every_interface() -> None:
    cmd = re.search(r"^CMD \[(.*)\]", (REPO / "suggestion" / "Dockerfile").read_text(), re.M).group(1)
    arguments = [part.strip().strip('"') for part in cmd.split(",")]
    assert arguments[arguments.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "argument --workers: 0 must be a whole number in [1, 256]"),
    (["--port", "70000"], "argument --port: 70000 must be a whole number in [0, 65535]"),
    (["--max-message-mb", "4096"], "argument --max-message-mb: 4096 must be a whole number in [1, 2047]"),
    (["--grace", "nan"], "argument --grace: 'nan' is not a number"),
])
def test_out_of_range_flags_are_one_line(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "serve", *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert message in line


def test_a_second_server_on_a_taken_port_exits_at_once_naming_the_port() -> None:
    """gRPC sets SO_REUSEPORT unless told not to: two servers would then split Katib's calls between them."""
    first = start_serve()
    port = first.address.rsplit(":", 1)[1]
    second = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "serve", "--port", port],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        assert second.stderr is not None
        for line in second.stderr:  # ends when the second server exits, or once it shows it serves
            lines.append(line.rstrip("\n"))
            if "serving Suggestion and health" in line:
                break
    finally:
        if second.poll() is None:
            second.kill()
        code = second.wait(timeout=HANG_GUARD_SECONDS)
        assert first.stop() == 0
    assert code == 2, lines
    assert lines == [f"katib-nas serve: error: cannot listen on 127.0.0.1:{port}: the port is in use "
                     "(another server listens on it)"]
