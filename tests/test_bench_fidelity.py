"""The fidelity benchmark's bookkeeping: kept figures are reused only for the same network and budget, earlier
runs' folders are merged by architecture, and a failed network is named rather than silently left out. The
rank figures it reports decide the search protocol's budgets, so a mixed-up file would mislead them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
#: The flags' defaults as a kept file records them, with --final-epochs 0.
BUDGET = {"seed": 0, "truncated_epochs": 1, "truncated_images": 12000, "final_epochs": 0, "final_images": 0}


def drawn(count: int) -> list[str]:
    """The nas-random networks bench_fidelity draws, as it draws them."""
    code = f"import json, bench_fidelity; print(json.dumps(bench_fidelity.sample('nas-random', {count})))"
    return json.loads(subprocess.run([sys.executable, "-c", code], cwd=BENCH, check=True, capture_output=True,
                                     text=True).stdout)


@pytest.fixture(scope="module")
def networks() -> list[str]:
    return drawn(3)


def plant(folder: Path, networks: list[str], truncated: list[float], final: list[float], **extra: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, (text, low, high) in enumerate(zip(networks, truncated, final)):
        row = {"architecture": text, "truncated": low, "final": high, "truncated_cpu_s": 10.0, "final_cpu_s": 0.0,
               "budget": BUDGET} | extra
        (folder / f"fidelity-nas-random-{index}.json").write_text(json.dumps(row))


def plant_side_file(folder: Path, architecture: str) -> None:
    """Network 0's truncated accuracy (0.5, 7 CPU-s at the default budget), as a stopped job leaves it."""
    (folder / "fidelity-nas-random-0.truncated.json").write_text(json.dumps(
        {"architecture": architecture, "epochs": 1, "images": 12000, "seed": 0, "accuracy": 0.5, "cpu_s": 7.0}))


def fidelity(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "bench_fidelity.py"), "--spaces", "nas-random",
                           "--networks", "3", "--final-epochs", "0", "--jobs", "1", *flags],
                          capture_output=True, text=True, timeout=600)


def table_row(text: str, heading: str) -> str:
    """The nas-random row of the table under `heading`."""
    after = text.split(heading, 1)[1]
    return next(line for line in after.splitlines() if line.startswith("| nas-random |"))


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_kept_figures_are_reported_against_merged_reference_folders(tmp_path: Path, networks: list[str],
                                                                    order: tuple[str, str]) -> None:
    nan = math.nan
    plant(tmp_path / "out", networks, [0.80, 0.82, 0.84], [nan] * 3)
    # Folder a knows only the truncated accuracies, folder b only the final ones: each fills the other's NaN.
    plant(tmp_path / "a", networks, [0.88, 0.90, 0.89], [nan] * 3)
    plant(tmp_path / "b", networks, [nan] * 3, [0.93, 0.92, 0.91])
    done = fidelity("--out", str(tmp_path / "out"), "--reference", *(str(tmp_path / name) for name in order))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "fidelity.md").read_text()
    # Against a's order (1, 3, 2): one discordant pair of three, tau 1/3; rho 1 - 6*2/(3*8) = 0.5.
    assert "Against the truncated accuracies (1 epoch(s) on 12000 images, seed 0) of " in text
    assert table_row(text, "Against the truncated").startswith("| nas-random | 3 | 0.333 | 0.500 | 80.0-84.0 "
                                                               "| 88.0-90.0 |")
    # Against b's reversed order: tau and rho -1.
    assert table_row(text, "Against the final").startswith("| nas-random | 3 | -1.000 | -1.000 | 80.0-84.0 "
                                                           "| 91.0-93.0 |")
    kept = json.loads((tmp_path / "out" / "fidelity.json").read_text())["nas-random"]
    assert [row["truncated"] for row in kept] == [0.80, 0.82, 0.84]  # reused, not trained again


@pytest.mark.parametrize("change,named", [
    ({"budget": BUDGET | {"seed": 1}}, "was trained at another budget (seed 1 here 0); use another --out"),
    ({"budget": BUDGET | {"truncated_epochs": 2, "truncated_images": 30000}},
     "was trained at another budget (truncated_epochs 2 here 1, truncated_images 30000 here 12000)"),
    ({"budget": None}, "was written before budgets were recorded; use another --out"),
    ({"architecture": "in28x28x1-cls10-stem16/w32:c3"}, "holds another network"),
])
def test_a_kept_file_of_other_flags_stops_the_run_before_training(tmp_path: Path, networks: list[str],
                                                                 change: dict, named: str) -> None:
    plant(tmp_path, networks[:1], [0.80], [math.nan], **change)
    done = fidelity("--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"bench_fidelity: error: {tmp_path / 'fidelity-nas-random-0.json'} {named}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fidelity-nas-random-0.json"]  # nothing trained


def test_an_empty_reference_folder_stops_the_run_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = fidelity("--out", str(tmp_path / "out"), "--reference", str(tmp_path / "empty"))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"bench_fidelity: error: --reference {tmp_path / 'empty'}: "
                                   "no fidelity-SPACE-N.json files there")


def test_a_job_reuses_its_kept_truncated_accuracy(tmp_path: Path, networks: list[str]) -> None:
    out = tmp_path / "fidelity-nas-random-0.json"
    side = tmp_path / "fidelity-nas-random-0.truncated.json"
    plant_side_file(tmp_path, networks[0])
    done = subprocess.run([sys.executable, str(BENCH / "bench_fidelity.py"), "--job", networks[0], "--job-out",
                           str(out), "--final-epochs", "0"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())
    assert (row["truncated"], row["truncated_cpu_s"], row["budget"]) == (0.5, 7.0, BUDGET)
    assert not side.exists()


def test_a_failed_network_is_named_and_fails_the_run(tmp_path: Path, networks: list[str]) -> None:
    plant(tmp_path, networks[:2], [0.80, 0.82], [math.nan] * 2)
    (tmp_path / "fidelity-nas-random-2.truncated.json").write_text("{not json")  # the third network's job crashes
    done = fidelity("--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("bench_fidelity: error: 1 network(s) failed: "
                                                    "fidelity-nas-random-2.json (exit 1)")
    assert "Failed, left out of every table" in (tmp_path / "fidelity.md").read_text()
    assert len(json.loads((tmp_path / "fidelity.json").read_text())["nas-random"]) == 2


def test_a_reference_without_final_accuracies_gets_no_empty_table(tmp_path: Path, networks: list[str]) -> None:
    nan = math.nan
    plant(tmp_path / "out", networks, [0.80, 0.82, 0.84], [nan] * 3)
    plant(tmp_path / "a", networks, [0.88, 0.90, 0.89], [nan] * 3)
    done = fidelity("--out", str(tmp_path / "out"), "--reference", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "fidelity.md").read_text()
    assert "Against the truncated" in text and "Against the final" not in text


def test_a_final_training_checkpoints_in_a_folder_named_by_its_budget_and_clears_it(tmp_path: Path,
                                                                                   networks: list[str]) -> None:
    """The final training runs with a per-epoch checkpoint (a stopped run loses at most one epoch); once its
    result is written the checkpoint folder is gone. The truncated accuracy comes from the planted side file."""
    out = tmp_path / "fidelity-nas-random-0.json"
    plant_side_file(tmp_path, networks[0])
    seen: list[str] = []
    process = subprocess.Popen([sys.executable, str(BENCH / "bench_fidelity.py"), "--job", networks[0], "--job-out",
                                str(out), "--final-epochs", "2", "--final-images", "600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:  # the checkpoint folder exists while the final training runs
        seen += [p.name for p in tmp_path.iterdir() if p.is_dir()]
        time.sleep(0.02)
    assert process.returncode == 0, process.stderr.read()
    assert "fidelity-nas-random-0.final-2x600-seed0" in seen
    row = json.loads(out.read_text())
    assert row["truncated"] == 0.5 and 0.0 < row["final"] <= 1.0
    assert row["budget"] == BUDGET | {"final_epochs": 2, "final_images": 600}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fidelity-nas-random-0.json"]


def test_reference_folders_of_two_budgets_stop_the_run(tmp_path: Path, networks: list[str]) -> None:
    nan = math.nan
    plant(tmp_path / "a", networks[:2], [0.88, 0.90], [nan] * 2)
    plant(tmp_path / "b", networks[2:], [0.91], [nan], budget=BUDGET | {"truncated_epochs": 2, "truncated_images": 30000})
    done = fidelity("--out", str(tmp_path / "out"), "--reference", str(tmp_path / "a"), str(tmp_path / "b"))
    assert done.returncode == 1
    assert done.stderr.strip() == ("bench_fidelity: error: --reference folders hold truncated accuracies at 2 budgets "
                                   "(1 epoch(s) on 12000 images, seed 0; 2 epoch(s) on 30000 images, seed 0); "
                                   "give folders of one budget")
    assert not (tmp_path / "out").exists()


#: A job whose trainer reports a failed training (no metrics: it diverged or exited non-zero).
FAILING_JOB = """
import sys
import bench_fidelity
bench_fidelity.run_network_trial = lambda *arguments, **options: {}
sys.argv = ["bench_fidelity.py", "--job", sys.argv[1], "--job-out", sys.argv[2], *sys.argv[3:]]
bench_fidelity.main()
"""


@pytest.mark.parametrize("flags,which", [(["--final-epochs", "0"], "truncated"), (["--final-epochs", "1"], "final")])
def test_a_failed_training_is_an_error_not_a_kept_figure(tmp_path: Path, networks: list[str], flags: list[str],
                                                         which: str) -> None:
    """A failed training leaves no result (and a failed truncated one no side file), so a rerun trains it again."""
    out = tmp_path / "fidelity-nas-random-0.json"
    if which == "final":  # the truncated accuracy is known; only the final training runs
        plant_side_file(tmp_path, networks[0])
    done = subprocess.run([sys.executable, "-c", FAILING_JOB, networks[0], str(out), *flags], cwd=BENCH,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"bench_fidelity: error: fidelity-nas-random-0.json: the {which} training "
                                          "failed")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ([] if which == "truncated" else
                                                    ["fidelity-nas-random-0.truncated.json"])
