"""The search benchmark's summary, rewritten from a results file by `bench_search.py --summary`: the paired
differences, their intervals and the goals' verdicts are what decide whether a method is reported as a win."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: Test accuracy (%) of nas-random per seed; every other method is a fixed offset from it per seed.
BASE = [88.0, 89.0, 90.0, 88.5, 89.5, 90.5, 88.2, 89.2]
#: Per-seed differences alternating 0.5 and 1.5: mean +1.00, sd sqrt(2/7), so the 95% t interval with 7
#: degrees of freedom (t = 2.3646) is +1.00 -+ 0.447.
REINFORCE_GAIN = [0.5, 1.5] * 4


@functools.cache
def budget(quick: bool) -> dict[str, Any]:
    """bench_search's budget (standard or --quick) as its records carry it."""
    code = f"import dataclasses, json, bench_search; print(json.dumps(dataclasses.asdict(bench_search.Budget.of({quick}))))"
    return json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO / "bench", check=True,
                                     capture_output=True, text=True).stdout)


def record(method: str, seed: int, test_points: float, **extra: Any) -> dict[str, Any]:
    final = {"Test-Accuracy": test_points / 100, "Validation-Accuracy": test_points / 100, "params": 1e5,
             "macs": 1e7}
    return {"method": method, "seed": seed, "constrained": False, "target_ms": None, "trials": [],
            "final": final, "final_architecture": f"{method}-{seed}", "search_cpu_s": 1500.0, "final_cpu_s": 100.0,
            "search": {}, "note": "", "retrains": [], "budget": budget(False), **extra}


def write_results(folder: Path, seeds: int) -> None:
    rows = []
    for seed in range(1, seeds + 1):
        base = BASE[seed - 1]
        rows += [record("nas-random", seed, base),
                 record("envelopenet", seed, base - 0.3),
                 record("envelopenet-random-best-of-k", seed, base - 0.1),
                 record("proxylessnas-oneshot", seed, base + (0.9 if seed == 1 else 0.2 * (-1) ** seed),
                        search={"derived-rank": 1 if seed % 4 else 9, "ranked-paths": 21}),
                 record("proxylessnas-uniform", seed, base),
                 record("proxylessnas-reinforce", seed, base + REINFORCE_GAIN[seed - 1])]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def summary(folder: Path) -> str:
    """Run the summary from the results file and return it."""
    subprocess.run([sys.executable, str(REPO / "bench" / "bench_search.py"), "--summary", "--out", str(folder)],
                   check=True, capture_output=True, text=True)
    return (folder / "summary.md").read_text()


def goal(text: str, start: str) -> tuple[str, str]:
    """(status, figure) of the one goal whose text starts with `start`."""
    table = text.split("Goals (judged")[1].splitlines()
    rows = [line.strip("|").split(" | ") for line in table if line.startswith("| ")]
    (found,) = [(status.strip(), figure.strip()) for name, status, figure in rows if name.strip().startswith(start)]
    return found


def test_eight_paired_seeds_judge_every_goal_with_its_interval(tmp_path: Path) -> None:
    write_results(tmp_path, 8)
    text = summary(tmp_path)
    assert "| proxylessnas-reinforce | nas-random | +1.00 [+0.55, +1.45] (8/8 seeds) |" in text
    assert goal(text, "envelopenet at least as accurate") == ("MISS", "-0.30 [-0.30, -0.30] (0/8 seeds)")
    assert goal(text, "envelopenet at least +0.5")[0] == "MISS"
    # derived rank 9 of 21 (seeds 4 and 8) is outside the top 20% (ranks 1-5): 6 of 8 seeds
    assert goal(text, "one-shot derived network") == ("MET", "6/8")
    assert goal(text, "one-shot at least +0.5")[0] == "MISS"
    assert goal(text, "at least one method") == ("MET", "+1.00 [+0.55, +1.45] (8/8 seeds)")
    assert goal(text, "latency-constrained")[0] == "open (0/8 seeds measured)"


def test_with_one_seed_the_best_method_is_the_one_shown(tmp_path: Path) -> None:
    """Without intervals (one seed) the goal shows the method with the largest difference, not the first listed."""
    write_results(tmp_path, 1)
    text = summary(tmp_path)
    assert goal(text, "at least one method") == ("open (1/8 seeds so far; not on track)", "+0.90 (1/1 seeds)")
    assert goal(text, "envelopenet at least as accurate") == ("open (1/8 seeds so far; not on track)",
                                                                "-0.30 (0/1 seeds)")


def test_the_runs_document_has_the_quick_runs_shape(tmp_path: Path) -> None:
    """search.json reads like bench/results/search-quick-2026-11-30.json: every key of its runs, and the
    measured latency of a final network merged into its record."""
    write_results(tmp_path, 2)
    (tmp_path / "latency.jsonl").write_text(json.dumps({"architecture": "nas-random-2",
                                                        "measured-latency-ms": 1.25}) + "\n")
    summary(tmp_path)
    document = json.loads((tmp_path / "search.json").read_text())
    quick = json.loads((REPO / "bench" / "results" / "search-quick-2026-11-30.json").read_text())
    assert set(quick) - {"wall_s", "wall_note"} <= set(document)
    assert document["seeds"] == [1, 2]
    for run in document["runs"]:
        assert set(quick["runs"][0]) <= set(run)
    by_cell = {(r["method"], r["seed"]): r["final"] for r in document["runs"]}
    assert by_cell[("proxylessnas-reinforce", 2)]["Test-Accuracy"] == (BASE[1] + REINFORCE_GAIN[1]) / 100
    assert by_cell[("nas-random", 2)]["measured-latency-ms"] == 1.25
    assert "measured-latency-ms" not in by_cell[("nas-random", 1)]
