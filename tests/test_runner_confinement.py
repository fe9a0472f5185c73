"""`katib-nas run` writes and removes only inside its workdir, reads YAML as UTF-8, and says how to resume.

Before: metadata.name `a/../../../escaped` put trial logs outside the workdir (the name check was not
anchored at the end), a File collector path with `..` components made the runner delete and overwrite a
file outside it, a non-UTF-8 YAML ended in a traceback, and a dead suggestion server ended the run with
no word of `--resume` (now it is started again; one that keeps dying ends the run with the resume command).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from katib_nas.runner.manifest import ExperimentError, experiment_from_document
from katib_nas.runner.paths import PathError, confined
from katib_nas.runner.suggestion_process import MAX_RESTARTS
from katib_nas.runner.trial_template import build_command

from .conftest import load_yaml
from .support.local_runner import DIGITS, katib_nas, one_line, stub_experiment, trials, trials_so_far, wait_for


def document_with(**metadata: str) -> dict[str, Any]:
    document = load_yaml(DIGITS)
    document["metadata"].update(metadata)
    return document


@pytest.mark.parametrize("name", ["a/../../../escaped", "a/b", "ab\n", "a.b", "A", "a_b", "-a", "a-", "1a", "a" * 41,
                                  "..", ""])
def test_experiment_names_follow_kubernetes_dns1123_and_katib(name: str) -> None:
    with pytest.raises(ExperimentError, match="metadata.name"):
        experiment_from_document(document_with(name=name))


@pytest.mark.parametrize("name", ["a", "a-1", "nas-random-digits", "a" * 40])
def test_valid_names_are_accepted(name: str) -> None:
    assert experiment_from_document(document_with(name=name)).name == name


@pytest.mark.parametrize("namespace", ["../x", "Kubeflow", "a" * 64, "a-", "-a"])
def test_namespaces_are_dns1123_labels(namespace: str) -> None:
    with pytest.raises(ExperimentError, match="metadata.namespace"):
        experiment_from_document(document_with(namespace=namespace))


def test_a_traversing_experiment_name_writes_nothing_outside(tmp_path: Path) -> None:
    start = tmp_path / "project" / "here"
    start.mkdir(parents=True)
    document = yaml.safe_load(stub_experiment(tmp_path, max_trials=2).read_text())
    document["metadata"]["name"] = "a/../../../escaped"
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    result = katib_nas("run", path, cwd=start)
    assert result.returncode == 2
    assert "metadata.name 'a/../../../escaped' must be lower case letters" in one_line(result.stderr)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["experiment.yaml", "here", "project"]


def file_collector(path: str) -> dict[str, Any]:
    return {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": path, "kind": "File",
                                                                         "format": "TEXT"}}}


def test_a_file_collector_path_with_backsteps_touches_nothing_outside(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = "/var/log" + "/.." * 64 + str(victim)
    experiment = stub_experiment(tmp_path, f"--metrics-file={path}", max_trials=2,
                                 changes={"metricsCollectorSpec": file_collector(path)})
    result = katib_nas("run", experiment, "--workdir", tmp_path / "run")
    assert result.returncode == 2
    assert "must name a file without '..' components" in one_line(result.stderr)
    assert victim.read_text() == "precious"


def test_a_metrics_folder_linked_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    trial_dir = tmp_path / "run" / "trials" / "t-1"
    trial_dir.mkdir(parents=True)
    (trial_dir / "metrics").symlink_to(outside)
    spec = experiment_from_document(yaml.safe_load(stub_experiment(
        tmp_path, "--metrics-file=/var/log/katib/metrics.log", changes={
            "metricsCollectorSpec": file_collector("/var/log/katib/metrics.log")}).read_text()))
    with pytest.raises(PathError, match="outside"):
        build_command(spec, "t-1", {"architecture": "x"}, (), trial_dir)


@pytest.mark.parametrize("trial_name", ["../../x", "a/b", "T1", "x" * 64, "t-"])
def test_trial_names_from_a_reply_are_dns1123_labels(tmp_path: Path, trial_name: str) -> None:
    spec = experiment_from_document(yaml.safe_load(stub_experiment(tmp_path).read_text()))
    with pytest.raises(PathError, match="DNS-1123"):
        build_command(spec, trial_name, {"architecture": "x"}, (), tmp_path / "trials" / trial_name)


def test_a_label_of_63_characters_is_a_namespace_and_a_trial_name(tmp_path: Path) -> None:
    assert experiment_from_document(document_with(namespace="a" * 63)).namespace == "a" * 63
    spec = experiment_from_document(yaml.safe_load(stub_experiment(tmp_path).read_text()))
    build_command(spec, "t" * 63, {"architecture": "x"}, (), tmp_path / "trials" / ("t" * 63))


def test_a_relative_or_linked_workdir_confines_as_the_folder_it_is(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The default workdir (runs/NAME) is relative, and a workdir may sit behind a link: both are the folder."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "link").symlink_to(root)
    assert confined(tmp_path / "link" / "m.log", tmp_path / "link", "file") == root.resolve() / "m.log"
    monkeypatch.chdir(tmp_path)
    assert confined(Path("w/m.log"), Path("w"), "file") == (tmp_path / "w" / "m.log").resolve()


def test_confined_resolves_before_checking(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert confined(root / "a" / ".." / "b", root, "file") == (root / "b").resolve()
    with pytest.raises(PathError, match="outside"):
        confined(root / "a" / ".." / ".." / "b", root, "file")


def test_non_utf8_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(stub_experiment(tmp_path).read_bytes().replace(b"# ", b"# caf\xe9 ", 1) + b"# \xff\n")
    result = katib_nas("run", path, "--workdir", tmp_path / "run")
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(f"katib-nas run: error: {path} is not UTF-8 text: byte 0x")


def suggestion_server(runner: subprocess.Popen, killed: set[int]) -> psutil.Process | None:
    """The runner's live `katib-nas serve` child that was not killed yet."""
    try:
        children = psutil.Process(runner.pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if child.pid not in killed and child.status() != psutil.STATUS_ZOMBIE and "serve" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def server_log(workdir: Path) -> str:
    log = workdir / "suggestion.log"
    return log.read_text(errors="replace") if log.exists() else ""


def servers_started(workdir: Path) -> int:
    """How many suggestion servers the run started and saw serving (each logs one line to suggestion.log)."""
    return server_log(workdir).count("serving Suggestion and health")


def answering(workdir: Path, serving: int) -> bool:
    """Whether the run's `serving`-th suggestion server is up and has answered the runner (so the runner has
    seen it healthy: a server that dies before that is one that could not start)."""
    servers = server_log(workdir).split("serving Suggestion and health")
    return len(servers) > serving and "GetSuggestions experiment=" in servers[serving]


def kill_server(runner: subprocess.Popen, workdir: Path, killed: set[int], serving: int) -> None:
    """Kill the run's suggestion server once the `serving`-th one it started has answered a GetSuggestions."""
    wait_for(lambda: runner.poll() is not None
             or (answering(workdir, serving) and suggestion_server(runner, killed) is not None))
    assert runner.poll() is None, f"the run ended before its suggestion server number {serving} could be killed"
    server = suggestion_server(runner, killed)
    assert server is not None
    killed.add(server.pid)
    server.kill()


def assignments_recorded(workdir: Path) -> int:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0]


def test_a_dead_suggestion_server_is_started_again_and_the_run_goes_on(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    experiment = stub_experiment(tmp_path, max_trials=6, parallel=1)
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment), "--workdir",
                               str(workdir), "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(row[1] == "Succeeded" for row in trials_so_far(workdir)))
    kill_server(runner, workdir, set(), serving=1)
    stdout, stderr = runner.communicate()
    assert runner.returncode == 0, stderr
    said = stdout + stderr
    assert "the suggestion service exited (killed by SIGKILL) before answering GetSuggestions" in said, said
    assert f"started it again (restart 1 of {MAX_RESTARTS})" in said
    rows = trials(workdir)
    assert len(rows) == 6 and all(row[1] == "Succeeded" and row[2] == 1 for row in rows)
    assert assignments_recorded(workdir) == 6 and servers_started(workdir) == 2


def test_a_suggestion_server_that_keeps_dying_ends_the_run_with_the_resume_command(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    experiment = stub_experiment(tmp_path, "--sleep", "0.5", max_trials=8, parallel=1)  # the kills come between trials
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment), "--workdir",
                               str(workdir), "--no-report"], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(row[1] == "Succeeded" for row in trials_so_far(workdir)))
    killed: set[int] = set()
    for serving in range(1, MAX_RESTARTS + 2):
        kill_server(runner, workdir, killed, serving)
    stderr = runner.communicate()[1]
    assert runner.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert "the suggestion service exited (killed by SIGKILL)" in last
    assert f"(started again {MAX_RESTARTS} times already)" in last
    assert last.endswith(f"continue with: katib-nas run {experiment} --workdir {workdir} --resume")
    before = {row[0]: row for row in trials(workdir)}
    assert all(row[1] in ("Succeeded", "Created") for row in before.values())
    resumed = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    after = {row[0]: row for row in trials(workdir)}
    assert len(after) == 8 and all(row[1] == "Succeeded" for row in after.values())
    assert all(after[name][2] == before[name][2] for name, row in before.items() if row[1] == "Succeeded")
    assert assignments_recorded(workdir) == 8  # one per trial, none lost
