"""The search benchmark's summary, rewritten from a results file by `bench_search.py --summary`: the paired
differences, their intervals and the goals' verdicts are what decide whether a method is reported as a win."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .support.search_report import record

#: Test accuracy (%) of nas-random per seed; every other method is a fixed offset from it per seed.
BASE = [88.0, 89.0, 90.0, 88.5, 89.5, 90.5, 88.2, 89.2]
#: Per-seed differences alternating 0.5 and 1.5: mean +1.00, sd sqrt(2/7), so the 95% t interval with 7
#: degrees of freedom (t = 2.3646) is +1.00 -+ 0.447.
REINFORCE_GAIN = [0.5, 1.5] * 4


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
    assert goal(text, "at least one method") == ("MET", "proxylessnas-reinforce: +1.00 [+0.55, +1.45] (8/8 seeds)")
    assert goal(text, "latency-constrained")[0] == "open (no seeds yet)"


def test_with_one_seed_the_best_method_is_the_one_shown(tmp_path: Path) -> None:
    """Without intervals (one seed) the goal shows the method with the largest difference, not the first listed."""
    write_results(tmp_path, 1)
    text = summary(tmp_path)
    assert goal(text, "at least one method") == ("open (1/8 seeds so far; no interval yet)",
                                                 "proxylessnas-oneshot: +0.90 (1/1 seeds)")
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


def write(folder: Path, rows: list[dict[str, Any]]) -> None:
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_method_that_meets_the_goal_is_not_hidden_by_a_tighter_one(tmp_path: Path) -> None:
    """envelopenet's interval is the tightest (+0.39/+0.41) but short of +0.5; REINFORCE's is wider and meets it."""
    rows = []
    for seed in range(1, 9):
        base = BASE[seed - 1]
        rows += [record("nas-random", seed, base), record("envelopenet", seed, base + (0.39 if seed % 2 else 0.41)),
                 record("proxylessnas-reinforce", seed, base + (0.2 if seed % 2 else 1.8))]
    write(tmp_path, rows)
    # REINFORCE: mean 1.00, sd sqrt(8 * 0.64 / 7) = 0.855, half-width 2.3646 * 0.855 / sqrt(8) = 0.715.
    assert goal(summary(tmp_path), "at least one method") == ("MET", "proxylessnas-reinforce: +1.00 [+0.29, +1.71] "
                                                                     "(8/8 seeds)")


def test_a_difference_of_exactly_half_a_point_meets_the_goal(tmp_path: Path) -> None:
    """Test accuracies 0.8856 and 0.8906 differ by 0.5 points exactly, though 0.8906 * 100 - 0.8856 * 100 is
    0.49999999999998579 in floats."""
    rows = []
    for seed in range(1, 9):
        uniform, oneshot = record("proxylessnas-uniform", seed, 0.0), record("proxylessnas-oneshot", seed, 0.0)
        uniform["final"]["Test-Accuracy"], oneshot["final"]["Test-Accuracy"] = 0.8856, 0.8906
        rows += [uniform, oneshot]
    write(tmp_path, rows)
    assert goal(summary(tmp_path), "one-shot at least +0.5") == ("MET", "+0.50 [+0.50, +0.50] (8/8 seeds)")


@pytest.mark.parametrize("method,baseline,gains,goal_text,expected", [
    # per-seed differences summing to exactly 4.00, whose float mean is 0.49999999999999994
    ("proxylessnas-oneshot", "proxylessnas-uniform", [0.425, 0.565, 0.35, 0.58, 0.345, 0.58, 0.585, 0.57],
     "one-shot at least +0.5", ("MET", "+0.50 [+0.41, +0.59] (8/8 seeds)")),
    # summing to exactly 0, whose float mean is -6e-18
    ("envelopenet", "nas-random", [-0.49, -0.015, 0.375, -0.225, 0.04, 0.425, -0.465, 0.355],
     "envelopenet at least as accurate", ("MET", "+0.00 [-0.31, +0.31] (4/8 seeds)")),
])
def test_a_mean_exactly_on_the_threshold_meets_it(tmp_path: Path, method: str, baseline: str, gains: list[float],
                                                  goal_text: str, expected: tuple[str, str]) -> None:
    write(tmp_path, [row for seed, gain in enumerate(gains, start=1)
                     for row in (record(baseline, seed, BASE[seed - 1]), record(method, seed, BASE[seed - 1] + gain))])
    assert goal(summary(tmp_path), goal_text) == expected


@pytest.mark.parametrize("ranks,status", [
    ([9, 9, 9], "MISS"),  # 3 of 8 outside the top 20%: 6 of 8 can no longer be reached
    ([1] * 6, "MET"),  # 6 of 8 inside already
    ([1, 9], "open (2/8 seeds so far; not on track)"),
    ([1, 2, 3, 9], "open (4/8 seeds so far; on track)"),
])
def test_the_rank_goal_is_decided_as_soon_as_the_rest_cannot_change_it(tmp_path: Path, ranks: list[int],
                                                                      status: str) -> None:
    write(tmp_path, [record("proxylessnas-oneshot", seed, 90.0, search={"derived-rank": rank, "ranked-paths": 21})
                     for seed, rank in enumerate(ranks, start=1)])
    hits = sum(rank <= 5 for rank in ranks)
    assert goal(summary(tmp_path), "one-shot derived network") == (status, f"{hits}/{len(ranks)}")


def test_the_latency_goal_counts_against_t_on_the_latency_passs_clock(tmp_path: Path) -> None:
    """The search's T (1.0 ms) came from a profile where the largest network read 1/0.6 ms; the latency pass
    reads that network 20% slower, so T there is 1.2 ms and a final network at 1.25 ms is within 1.05 T (1.26),
    though not within 1.05 times the search's T. Seed 8's largest network was not measured: not counted."""
    rows = []
    for seed in range(1, 9):
        rows += [record("proxylessnas-oneshot", seed, 90.0),
                 record("proxylessnas-oneshot", seed, 89.0 if seed != 1 else 88.4, constrained=True, target_ms=1.0,
                        final_architecture=f"constrained-{seed}")]
        largest = {"architecture": "largest", "ms": 1 / 0.6} | ({"median-ms": 1.2 / 0.6} if seed < 8 else {})
        (tmp_path / f"largest-latency-seed{seed}.json").write_text(json.dumps(largest))
    write(tmp_path, rows)
    (tmp_path / "latency.jsonl").write_text("".join(
        json.dumps({"architecture": f"constrained-{seed}", "measured-latency-ms": 1.25}) + "\n"
        for seed in range(1, 9)))
    text = summary(tmp_path)
    # seed 1 lost 1.6 points to its unconstrained search (more than 1.5): 6 of 7 measured seeds count
    assert goal(text, "latency-constrained") == ("MET", "6/7")
    assert "| proxylessnas-oneshot | 2 | 1.000 | 1.200 | 1.04 | - | 89.00 |" in text
    assert "| proxylessnas-oneshot | 8 | 1.000 | not measured | not measured | - | 89.00 |" in text


def test_the_best_of_k_line_says_when_its_winner_was_found_against_envelopenets_spend(tmp_path: Path) -> None:
    """The control runs to the whole budget while the construction may end early: the report shows whether the
    control's winner came from CPU-seconds envelopenet did not have, and how many candidates were repeats."""
    trials = [{"index": i, "cpu_s": cpu_s, "assignments": {"architecture": text},
               "metrics": {"Validation-Accuracy": accuracy}}
              for i, (cpu_s, text, accuracy) in enumerate([(100.0, "a", "0.70"), (250.0, "b", "0.80"),
                                                           (400.0, "a", "0.70"), (1400.0, "c", "0.75")])]
    write(tmp_path, [record("envelopenet", 1, 90.0, search_cpu_s=1055.0),
                     record("envelopenet-random-best-of-k", 1, 90.0, trials=trials, final_architecture="b")])
    assert ("| envelopenet-random-best-of-k | 1 | 4 | winner found at 250 CPU-s (envelopenet spent 1055), "
            "1 repeated candidate(s) |") in summary(tmp_path)


def offsets(method: str, baseline: str, gains: list[float], **extra: Any) -> list[dict[str, Any]]:
    """A method and its baseline on seeds 1.., the method `gains[i]` points above the baseline on seed i + 1."""
    return [row for seed, gain in enumerate(gains, start=1)
            for row in (record(baseline, seed, BASE[seed - 1]), record(method, seed, BASE[seed - 1] + gain, **extra))]


def test_no_method_is_a_miss_while_another_can_still_meet_the_goal(tmp_path: Path) -> None:
    """envelopenet has all 8 seeds and misses (+0.30); REINFORCE has 4 and one-shot none, so the goal stays open."""
    rows = offsets("envelopenet", "nas-random", [0.3] * 8)
    rows += [record("proxylessnas-reinforce", seed, BASE[seed - 1] + gain)
             for seed, gain in enumerate([0.1, 0.3] * 2, start=1)]
    write(tmp_path, rows)
    assert goal(summary(tmp_path), "at least one method") == (
        "open (proxylessnas-oneshot, proxylessnas-reinforce not on 8 seeds yet; not on track)",
        "envelopenet: +0.30 [+0.30, +0.30] (8/8 seeds)")


def test_the_method_shown_has_the_higher_lower_bound_not_more_seeds(tmp_path: Path) -> None:
    """envelopenet (-0.30 on 8 seeds) is further from the goal than REINFORCE (+0.20 on 7; sd 0.1, t 2.4469 with 6
    degrees of freedom, half-width 0.092): REINFORCE is shown."""
    rows = offsets("envelopenet", "nas-random", [-0.3] * 8)
    rows += [record("proxylessnas-reinforce", seed, BASE[seed - 1] + gain)
             for seed, gain in enumerate([0.1, 0.3] * 3 + [0.2], start=1)]
    write(tmp_path, rows)
    assert goal(summary(tmp_path), "at least one method") == ("open (7/8 seeds so far; not on track)",
                                                              "proxylessnas-reinforce: +0.20 [+0.11, +0.29] "
                                                              "(7/7 seeds)")


def test_a_mean_over_half_a_point_with_an_interval_across_zero_is_a_miss(tmp_path: Path) -> None:
    # differences -1 and +2 alternating: mean +0.50, sd 1.604, half-width 2.3646 * 1.604 / sqrt(8) = 1.34
    write(tmp_path, offsets("proxylessnas-oneshot", "proxylessnas-uniform", [-1.0, 2.0] * 4))
    assert goal(summary(tmp_path), "one-shot at least +0.5") == ("MISS", "+0.50 [-0.84, +1.84] (4/8 seeds)")


def test_envelopenet_a_point_over_best_of_k_meets_its_goal(tmp_path: Path) -> None:
    write(tmp_path, offsets("envelopenet", "envelopenet-random-best-of-k", [0.5, 1.5] * 4))
    assert goal(summary(tmp_path), "envelopenet at least +0.5") == ("MET", "+1.00 [+0.55, +1.45] (8/8 seeds)")


def trials(accuracies: list[float | None]) -> list[dict[str, Any]]:
    """Search trials in proposal order; None is a trial that failed (no metrics)."""
    return [{"index": i, "cpu_s": 100.0 * (i + 1), "assignments": {"architecture": f"net-{i}"},
             "metrics": {} if accuracy is None else {"Validation-Accuracy": str(accuracy)}}
            for i, accuracy in enumerate(accuracies)]


def test_reinforces_second_half_reward_is_its_later_finished_trials_against_uniforms(tmp_path: Path) -> None:
    """REINFORCE's first finished trials score high and its later ones lower; only the later half (with the
    middle trial, the failed one dropped first) counts: 81.1-81.8 + 1 points over uniform's 80 on seed s, so
    the differences are 2.1..2.8, mean 2.45, sd 0.245, half-width 2.3646 * 0.245 / sqrt(8) = 0.20."""
    rows = []
    for seed in range(1, 9):
        late = [0.81 + seed / 1000, 0.82 + seed / 1000, 0.83 + seed / 1000]
        rows += [record("proxylessnas-uniform", seed, 90.0, trials=trials([0.80] * 5)),
                 record("proxylessnas-reinforce", seed, 90.0, trials=trials([None, 0.90, 0.90] + late))]
    write(tmp_path, rows)
    assert goal(summary(tmp_path), "REINFORCE second-half") == ("MET", "+2.45 [+2.25, +2.65] (8/8 seeds)")


@pytest.mark.parametrize("rank,hits", [(5, 1), (6, 0)])
def test_the_top_fifth_of_twenty_paths_ends_at_rank_five(tmp_path: Path, rank: int, hits: int) -> None:
    """Rank 5 of 21 has 4 of the 20 uniform paths at or ahead of it: inside the top 20%; rank 6 is not."""
    write(tmp_path, [record("proxylessnas-oneshot", 1, 90.0, search={"derived-rank": rank, "ranked-paths": 21})])
    assert goal(summary(tmp_path), "one-shot derived network")[1] == f"{hits}/1"


def constrained_seed(folder: Path, latency_ms: float | None) -> list[dict[str, Any]]:
    """Seed 1's one-shot cells: T is 1.2 ms on the latency pass's clock; the constrained network at `latency_ms`
    (None: not measured yet)."""
    (folder / "largest-latency-seed1.json").write_text(json.dumps({"architecture": "largest", "ms": 2.0,
                                                                    "median-ms": 2.4}))
    if latency_ms is not None:
        (folder / "latency.jsonl").write_text(json.dumps({"architecture": "constrained-1",
                                                          "measured-latency-ms": latency_ms}) + "\n")
    return [record("proxylessnas-oneshot", 1, 90.0),
            record("proxylessnas-oneshot", 1, 89.5, constrained=True, target_ms=1.0,
                   final_architecture="constrained-1")]


@pytest.mark.parametrize("latency_ms,figure", [(1.25, "1/1"), (1.27, "0/1")])
def test_a_constrained_network_over_1_05_t_does_not_count(tmp_path: Path, latency_ms: float, figure: str) -> None:
    """1.05 T is 1.26 ms: 1.25 ms counts, 1.27 ms does not."""
    write(tmp_path, constrained_seed(tmp_path, latency_ms))
    assert goal(summary(tmp_path), "latency-constrained") == ("open (1/8 seeds so far; on track)"
                                                              if figure == "1/1" else
                                                              "open (1/8 seeds so far; not on track)", figure)


def test_constrained_cells_waiting_for_the_latency_pass_are_named(tmp_path: Path) -> None:
    write(tmp_path, constrained_seed(tmp_path, None))
    assert goal(summary(tmp_path), "latency-constrained") == ("open (0 seed(s) judged, 1 await the --latency pass)",
                                                              "0/0")
