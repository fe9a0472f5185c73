"""A search benchmark folder holds one budget: finished cells and unfinished cells' journals of another
(--quick's, say) stop a run before anything runs, since they would be skipped or resumed and then paired with
this budget's cells in the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO
from .support.search_report import budget, record

BENCH = REPO / "bench" / "bench_search.py"


def bench_search(folder: Path, *flags: str) -> subprocess.CompletedProcess:
    """One hand-designed cell of seed 1 (no search, so a wrongly started run would train only its final net)."""
    return subprocess.run([sys.executable, str(BENCH), "--out", str(folder), "--seeds", "1", "--methods",
                           "hand-designed", "--constrained-methods", *flags], capture_output=True, text=True,
                          timeout=900)


def plant(folder: Path, **extra: object) -> None:
    (folder / "results.jsonl").write_text(json.dumps(record("hand-designed", 1, 89.0, **extra)) + "\n")


def listing(folder: Path) -> list[str]:
    """The folder's files, without the lock files a bench_search holds while it runs."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix != ".lock")


def test_a_finished_cell_of_another_budget_stops_the_run(tmp_path: Path) -> None:
    plant(tmp_path, budget=budget(True))
    before = listing(tmp_path)
    done = bench_search(tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"bench_search: error: {tmp_path / 'results.jsonl'} (cell hand-designed-seed1) was run "
                           "at another budget (search_images 5000 here 12000, search_cpu_s 150.0 here 1500.0, ")
    assert listing(tmp_path) == before  # nothing ran, no summary written


def test_the_summary_refuses_cells_of_another_budget(tmp_path: Path) -> None:
    plant(tmp_path)  # the standard budget's cell, summarised as if --quick
    done = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--summary", "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "was run at another budget (search_images 12000 here 5000" in done.stderr
    assert not (tmp_path / "summary.md").exists()


def test_a_journal_without_this_budget_is_not_resumed(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    journal = jobs / "hand-designed-seed1.journal.jsonl"
    journal.write_text(json.dumps({"kind": "search-done", "trials": []}) + "\n")  # begun without a budget entry
    done = bench_search(tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"bench_search: error: {journal} was written before budgets were recorded; "
                                   "resume it with the commit that wrote it, or use another --out")
    assert listing(tmp_path) == ["jobs", "jobs/hand-designed-seed1.journal.jsonl"]


def test_cells_of_this_budget_are_kept_and_skipped(tmp_path: Path) -> None:
    plant(tmp_path)
    done = bench_search(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "started" not in done.stdout  # the cell is done: nothing to run
    assert "| hand-designed | 1 | 89.00 (0.00)" in (tmp_path / "summary.md").read_text()


def test_a_cell_job_refuses_a_journal_begun_at_another_budget(tmp_path: Path) -> None:
    """The job itself checks too: it records the budget first in a new journal and resumes only that budget."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    journal = jobs / "hand-designed-seed1.journal.jsonl"
    journal.write_text(json.dumps({"kind": "budget", "budget": budget(True)}) + "\n")
    done = subprocess.run([sys.executable, str(BENCH), "--job", "hand-designed", "--seed", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"bench_search: error: {journal} was run at another budget (search_images "
                                          "5000 here 12000")
    assert listing(tmp_path) == ["jobs", "jobs/hand-designed-seed1.journal.jsonl"]


def test_a_journal_cut_in_its_first_line_starts_its_cell_afresh(tmp_path: Path) -> None:
    """A stop while the budget line was being written leaves nothing to resume: the check reads no entry there
    and the run goes on (the cell is done here, so no job rewrites the journal)."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    plant(tmp_path)
    journal = jobs / "hand-designed-seed1.journal.jsonl"
    journal.write_text('{"kind": "budget", "bud')
    done = bench_search(tmp_path)
    assert done.returncode == 0, done.stderr
    assert journal.read_text() == '{"kind": "budget", "bud'  # read, not rewritten


#: best_of_k with a stand-in for the trainer that spends a little CPU and scores every network alike: the
#: candidate loop and its budget are what is under test, not the training.
BEST_OF_K = """
import dataclasses, json, time
import bench_search as bs

trained = []
def trial(text, seed, epochs, images, table, **options):
    trained.append(text)
    started = time.process_time()
    while time.process_time() - started < 0.005:
        pass
    return {"Validation-Accuracy": "0.5"}

bs.run_network_trial = trial
budget = dataclasses.replace(bs.Budget.of(True), search_cpu_s=0.4)
run = bs.Run("envelopenet-random-best-of-k", 1, False, None)
info = bs.method_experiment(run.method, run.seed, budget, None)
bs.best_of_k(run, info, budget, bs.Journal(None))
print(json.dumps(trained))
"""


def test_best_of_k_trains_no_network_twice() -> None:
    """A depth of 0 draws the start network again; trained again with the same seed it scores the same, so a
    repeat would only spend the control's budget."""
    done = subprocess.run([sys.executable, "-c", BEST_OF_K], cwd=REPO / "bench", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    trained = json.loads(done.stdout)
    assert len(trained) > 20  # enough draws that the quick budget's 6 depths repeat the start network
    assert len(set(trained)) == len(trained)


SMALL = "in28x28x1-cls10-stem16/w16:mb3e3@r:zero@r/w32s2:mb3e3@r:zero@r/w64s2:mb3e3@r:zero@r"
LARGEST = "in28x28x1-cls10-stem16/w16:mb7e6@r:mb7e6@r/w32s2:mb7e6@r:mb7e6@r/w64s2:mb7e6@r:mb7e6@r"


def test_the_latency_pass_times_the_largest_network_again_with_a_new_constrained_network(tmp_path: Path) -> None:
    """A constrained network counts against T from the largest network's median in the same pass; a pass that
    measures nothing new for the seed keeps the median it has."""
    constrained = record("proxylessnas-oneshot", 1, 89.0, constrained=True, target_ms=1.0, final_architecture=SMALL)
    (tmp_path / "results.jsonl").write_text(json.dumps(constrained) + "\n")
    largest = tmp_path / "largest-latency-seed1.json"
    largest.write_text(json.dumps({"architecture": LARGEST, "ms": 2.0, "median-ms": 999.0}))

    def latency_pass() -> float:
        done = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--latency"], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(largest.read_text())["median-ms"]

    first = latency_pass()
    assert first != 999.0 and 0 < first < 100  # timed again beside the new constrained network
    assert [json.loads(line)["architecture"] for line in (tmp_path / "latency.jsonl").read_text().splitlines()] \
        == [SMALL]
    assert latency_pass() == first  # nothing new: kept


def test_a_constrained_network_measured_before_its_largest_network_is_measured_again_with_it(tmp_path: Path) -> None:
    """T and the constrained network's latency come from one pass: a network already in latency.jsonl (an
    earlier pass) is timed again when its seed's largest network is first timed."""
    constrained = record("proxylessnas-oneshot", 1, 89.0, constrained=True, target_ms=1.0, final_architecture=SMALL)
    (tmp_path / "results.jsonl").write_text(json.dumps(constrained) + "\n")
    (tmp_path / "largest-latency-seed1.json").write_text(json.dumps({"architecture": LARGEST, "ms": 2.0}))
    (tmp_path / "latency.jsonl").write_text(json.dumps({"architecture": SMALL, "measured-latency-ms": 999.0}) + "\n")
    done = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--latency"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "latency.jsonl").read_text().splitlines()]
    assert [line["architecture"] for line in lines] == [SMALL, SMALL]
    assert 0 < lines[-1]["measured-latency-ms"] < 100
    assert "median-ms" in json.loads((tmp_path / "largest-latency-seed1.json").read_text())
    [run] = json.loads((tmp_path / "search.json").read_text())["runs"]
    assert run["final"]["measured-latency-ms"] == lines[-1]["measured-latency-ms"]  # the later line counts


#: Holds a lock file as a running bench_search would, until killed.
HOLDER = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(300)
"""


def test_a_second_bench_search_on_the_same_folder_stops_with_one_line(tmp_path: Path) -> None:
    """Two runs (or a run and an orphaned cell job) writing one folder would interleave results and journals."""
    plant(tmp_path)
    (tmp_path / "jobs").mkdir()
    for lock, command, what in [
        (tmp_path / "run.lock", ["--out", str(tmp_path), "--summary"], str(tmp_path)),
        (tmp_path / "jobs" / "hand-designed-seed1.lock", ["--job", "hand-designed", "--seed", "1", "--out",
                                                         str(tmp_path)], "cell hand-designed-seed1"),
    ]:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            done = subprocess.run([sys.executable, str(BENCH), *command], capture_output=True, text=True, timeout=300)
        finally:
            holder.kill()
            holder.wait()
        assert done.returncode == 1
        assert done.stderr.strip() == (f"bench_search: error: {what} is in use by another bench_search ({lock} is "
                                       "locked); wait for it to end or stop it")
    assert not (tmp_path / "summary.md").exists()
    done = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--summary"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # the lock goes with the process that held it


def test_a_failed_cell_is_named_and_fails_the_run(tmp_path: Path) -> None:
    """A cell job that exits non-zero (here: its lock is held) is not a result; the run says which one failed and
    where its output is, and the rerun retries it."""
    lock = tmp_path / "jobs" / "hand-designed-seed1.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = bench_search(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"bench_search: error: 1 cell(s) failed: hand-designed-seed1 (each one's output is in {tmp_path / 'jobs'}"
        "/<cell>.log); run the same command again to retry them")
    assert "cell hand-designed-seed1 is in use" in (tmp_path / "jobs" / "hand-designed-seed1.log").read_text()
    assert not (tmp_path / "results.jsonl").exists()


MISSING_DATA = """
import sys
from pathlib import Path
import bench_search as bs
bs.check_data(Path(sys.argv[1]))
"""


def test_missing_fashion_mnist_stops_the_run_in_one_line_before_any_cell(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", MISSING_DATA, str(tmp_path)], cwd=REPO / "bench",
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"bench_search: error: {tmp_path / 'train-images-idx3-ubyte.gz'} not found: "
                                   "every cell trains and tests on Fashion-MNIST; install it with make data (Debian "
                                   "package dataset-fashion-mnist)")
