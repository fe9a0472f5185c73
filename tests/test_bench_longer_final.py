"""The longer-final-training benchmark: it trains a finished run's final networks again, on each seed's split and
validation images only, reports paired differences at both trainings from what it kept, and never mixes in a
kept figure of another network or budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
NETWORKS = {"nas-random": "in28x28x1-cls10-stem8/w8s2:c3/w16s2:c3",
            "proxylessnas-reinforce": "in28x28x1-cls10-stem8/w8s2:s3/w16s2:c5"}
RUN_BUDGET = {"final_epochs": 2, "final_images": 30000, "retrains": 2}


def plant_run(folder: Path) -> None:
    """A finished run's results.jsonl: two methods on seeds 1 and 2 with their retrains' validation accuracies,
    and a constrained cell the benchmark must skip."""
    folder.mkdir()
    records = []
    for seed, (a, b) in ((1, (0.80, 0.82)), (2, (0.81, 0.80))):
        for method, accuracy in zip(NETWORKS, (a, b)):
            records.append({"method": method, "seed": seed, "constrained": False,
                            "final_architecture": NETWORKS[method], "budget": RUN_BUDGET,
                            "retrains": [{"Validation-Accuracy": accuracy - 0.01}, {"Validation-Accuracy": accuracy + 0.01}]})
    records.append(records[0] | {"constrained": True, "final_architecture": "in28x28x1-cls10-stem8/w8:c3"})
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def longer(run: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "bench_longer_final.py"), "--run", str(run), "--out",
                           str(out), "--epochs", "1", "--images", "400", "--jobs", "2", *flags],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("longer")
    plant_run(root / "run")
    return root / "run", root / "out", longer(root / "run", root / "out")


def test_every_unconstrained_final_network_is_trained_once_from_a_fresh_seed(trained) -> None:
    run, out, done = trained
    assert done.returncode == 0, done.stderr
    kept = {p.name: json.loads(p.read_text()) for p in out.glob("longer-*-[0-9].json")}
    assert sorted(kept) == ["longer-nas-random-1.json", "longer-nas-random-2.json",
                            "longer-proxylessnas-reinforce-1.json", "longer-proxylessnas-reinforce-2.json"]
    for name, row in kept.items():
        method, seed = name[len("longer-"):-len(".json")].rsplit("-", 1)
        assert row["architecture"] == NETWORKS[method] and row["seed"] == int(seed)
        assert row["budget"] == {"epochs": 1, "images": 400}
        assert row["training_seed"] == 900_000_000 + 1000 * int(seed) + 100  # neither a search's nor a retrain's
        assert 0.0 < row["validation"] <= 1.0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # checkpoints cleared


def test_the_report_pairs_the_methods_at_both_trainings(trained) -> None:
    run, out, done = trained
    text = (out / "longer.md").read_text()
    # The run's own figures: differences +2 and -1 points, mean +0.50, 1 of 2 seeds won.
    row = next(line for line in text.splitlines() if line.startswith("| proxylessnas-reinforce - nas-random |"))
    assert row.split(" | ")[1].startswith("+0.50 [") and row.split(" | ")[1].endswith("(1/2 seeds)")
    kept = {(r["method"], r["seed"]): r["validation"] * 100 for r in json.loads((out / "longer.json").read_text())}
    mean = sum(kept[("proxylessnas-reinforce", s)] - kept[("nas-random", s)] for s in (1, 2)) / 2
    assert row.split(" | ")[2].startswith(f"{mean:+.2f} [")
    assert "| nas-random | 2 | 80.50 |" in text and "| proxylessnas-reinforce | 2 | 81.00 |" in text


def test_a_rerun_trains_nothing_kept(trained) -> None:
    run, out, done = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("longer-*-[0-9].json")}
    again = longer(run, out)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("longer-*-[0-9].json")} == before


def test_a_report_of_a_partial_run_trains_nothing_and_pairs_only_the_seeds_both_know(trained, tmp_path: Path) -> None:
    run, out, done = trained
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("longer-nas-random-1.json", "longer-nas-random-2.json", "longer-proxylessnas-reinforce-1.json"):
        (partial / name).write_text((out / name).read_text())
    reported = longer(run, partial, "--report")
    assert reported.returncode == 0, reported.stderr
    assert sorted(p.name for p in partial.iterdir()) == ["longer-nas-random-1.json", "longer-nas-random-2.json",
                                                         "longer-proxylessnas-reinforce-1.json", "longer.json",
                                                         "longer.md"]
    text = (partial / "longer.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| proxylessnas-reinforce - nas-random |"))
    assert row.split(" | ")[1] == "+2.00 (1/1 seeds)"  # seed 1 alone: 82 - 80 points, no interval from one pair
    assert "| nas-random | 2 | 80.50 |" in text and "| proxylessnas-reinforce | 1 | 82.00 |" in text


@pytest.mark.parametrize("change,named", [
    ({"budget": {"epochs": 6, "images": 30000}}, "was trained at another budget (epochs 6 here 1, images 30000 here 400)"),
    ({"architecture": "in28x28x1-cls10-stem8/w8:c3"}, "holds another network than nas-random's final network of seed 1"),
])
def test_a_kept_file_of_another_network_or_budget_stops_the_run_before_training(tmp_path: Path, change: dict,
                                                                                named: str) -> None:
    plant_run(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    kept = {"architecture": NETWORKS["nas-random"], "seed": 1, "validation": 0.8, "cpu_s": 1.0,
            "budget": {"epochs": 1, "images": 400}} | change
    (out / "longer-nas-random-1.json").write_text(json.dumps(kept))
    done = longer(tmp_path / "run", out)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line == f"bench_longer_final: error: {out / 'longer-nas-random-1.json'} {named}; use another --out"
    assert [p.name for p in out.iterdir()] == ["longer-nas-random-1.json"]


@pytest.mark.parametrize("flags,named", [
    (["--methods", "envelopenet"], "holds no final network of envelopenet"),
    (["--seeds", "2", "9"], "holds no final network of nas-random, proxylessnas-reinforce for seed(s) 9"),
])
def test_a_run_without_the_methods_or_seeds_is_one_line(tmp_path: Path, flags: list[str], named: str) -> None:
    plant_run(tmp_path / "run")
    done = longer(tmp_path / "run", tmp_path / "out", *flags)
    assert done.returncode == 1
    assert done.stderr.strip() == f"bench_longer_final: error: {tmp_path / 'run' / 'results.jsonl'} {named}"
    assert not (tmp_path / "out").exists()


def test_a_budget_below_one_is_refused_by_name(tmp_path: Path) -> None:
    plant_run(tmp_path / "run")
    done = longer(tmp_path / "run", tmp_path / "out", "--epochs", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("error: --epochs must be at least 1, got 0")
