"""Do the search benchmark's comparisons hold under a longer final training? Its final networks trained again.

bench_search.py trains every method's final network for 2 epochs on 30,000 images. This script takes the final
networks of chosen methods from a finished run's results.jsonl and trains each once more for EPOCHS epochs on
IMAGES images (by default 6 x 30,000, three times as long), from a seed neither the search nor the run's
retrains used, on the seed's own split, and scores it on the seed's validation images only: the test set stays
as the run left it, touched once. The report sets the paired differences between methods at the run's final
training (its retrains' mean validation accuracy) beside those at the longer one, over the same seeds.

    .venv/bin/python bench/bench_longer_final.py --run bench/results/search-standard \
        --methods nas-random proxylessnas-reinforce --out OUT

Every network trains in its own subprocess with one torch thread, --jobs side by side; each network's figures
are kept in OUT as they come, its training checkpoints every epoch, and a rerun trains only what is missing
(a kept file of another network or budget stops the run before any training). `--report` writes the report
from what is kept, over the seeds both methods of a pair know, and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_search import RETRAIN_SEED_BASE, budget_differences, read_results, run_network_trial
from job_pool import run_jobs
from search_report import ORDER, Paired, difference

#: Added to the run's retrain seeds (RETRAIN_SEED_BASE + 1000 x seed + retrain index, index < 100).
LONGER_SEED_OFFSET = 100


def training_seed(seed: int) -> int:
    return RETRAIN_SEED_BASE + 1000 * seed + LONGER_SEED_OFFSET


def budget(args: argparse.Namespace) -> dict[str, int]:
    return {"epochs": args.epochs, "images": args.images}


def cell_file(out: Path, method: str, seed: int) -> Path:
    return out / f"longer-{method}-{seed}.json"


def checkpoint_dir(job_out: Path, args: argparse.Namespace) -> Path:
    return job_out.with_name(f"{job_out.stem}.{args.epochs}x{args.images}")


def final_cells(run: Path, methods: list[str], seeds: list[int] | None) -> list[dict[str, Any]]:
    """The run's unconstrained final networks of `methods`, seed by seed so that pairs complete first."""
    records = [r for r in read_results(run) if not r["constrained"] and r["method"] in methods]
    if not records:
        raise SystemExit(f"bench_longer_final: error: {run / 'results.jsonl'} holds no final network of "
                         f"{', '.join(methods)}")
    missing = sorted(set(seeds or []) - {r["seed"] for r in records})
    if missing:
        raise SystemExit(f"bench_longer_final: error: {run / 'results.jsonl'} holds no final network of "
                         f"{', '.join(methods)} for seed(s) {', '.join(map(str, missing))}")
    chosen = [r for r in records if seeds is None or r["seed"] in seeds]
    return sorted(chosen, key=lambda r: (r["seed"], methods.index(r["method"])))


def run_one(architecture: str, seed: int, job_out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One longer training of one final network, scored on its seed's validation images."""
    import torch

    torch.set_num_threads(1)
    started = time.process_time()
    metrics = run_network_trial(architecture, training_seed(seed), args.epochs, args.images, None,
                                split_seed=seed, checkpoint_dir=checkpoint_dir(job_out, args))
    if not metrics:
        raise SystemExit(f"bench_longer_final: error: {job_out.name}: the training failed "
                         f"(its checkpoint is kept in {checkpoint_dir(job_out, args)})")
    return {"architecture": architecture, "seed": seed, "training_seed": training_seed(seed),
            "validation": float(metrics["Validation-Accuracy"]), "cpu_s": time.process_time() - started,
            "budget": budget(args)}


def check_kept(path: Path, record: dict[str, Any], args: argparse.Namespace) -> None:
    kept = json.loads(path.read_text())
    if kept.get("architecture") != record["final_architecture"]:
        raise SystemExit(f"bench_longer_final: error: {path} holds another network than {record['method']}'s "
                         f"final network of seed {record['seed']}; use another --out")
    if kept.get("budget") != budget(args):
        raise SystemExit(f"bench_longer_final: error: {path} was trained at another budget "
                         f"({budget_differences(kept.get('budget') or {}, budget(args))}); use another --out")


def run_all(cells: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Train every cell not kept in OUT yet; the cells whose training failed. Every kept file is checked before
    any training starts."""
    jobs = []
    for record in cells:
        path = cell_file(args.out, record["method"], record["seed"])
        if path.is_file():
            check_kept(path, record, args)
        else:
            jobs.append(([sys.executable, __file__, "--job", record["final_architecture"], "--seed-of-job",
                          str(record["seed"]), "--job-out", str(path), "--epochs", str(args.epochs),
                          "--images", str(args.images)], path))
    return run_jobs(jobs, args.jobs)


def run_validation(record: dict[str, Any]) -> float:
    """The run's final figure on the validation images: its retrains' mean, in points."""
    return statistics.mean(r["Validation-Accuracy"] for r in record["retrains"]) * 100


def report(cells: list[dict[str, Any]], longer: dict[tuple[str, int], dict[str, Any]],
           args: argparse.Namespace, run_budget: dict[str, Any]) -> str:
    methods = [m for m in ORDER if any(c["method"] == m for c in cells)]
    lines = [f"Final networks of {args.run}, trained again for {args.epochs} epoch(s) on {args.images} images "
             f"(the run's final training: {run_budget.get('final_epochs')} epoch(s) on "
             f"{run_budget.get('final_images')} images, mean of {run_budget.get('retrains')} retrains); validation "
             f"accuracy on each seed's validation images, %.", "",
             "| method | networks | run's final training | longer training | gain |", "|---|---|---|---|---|"]
    for method in methods:
        done = [c for c in cells if c["method"] == method and (method, c["seed"]) in longer]
        if done:
            short = [run_validation(c) for c in done]
            long = [longer[(method, c["seed"])]["validation"] * 100 for c in done]
            lines.append(f"| {method} | {len(done)} | {statistics.mean(short):.2f} | {statistics.mean(long):.2f} "
                         f"| {statistics.mean(long) - statistics.mean(short):+.2f} |")
    lines += ["", "Paired differences (points, 95% t interval, seeds won), over the seeds both trainings know:", "",
              "| method - baseline | run's final training | longer training |", "|---|---|---|"]
    by = {(c["method"], c["seed"]): c for c in cells}
    for method in methods:
        for baseline in methods[:methods.index(method)]:
            seeds = sorted({c["seed"] for c in cells if (method, c["seed"]) in longer and (baseline, c["seed"]) in longer})
            short = Paired.of([difference(run_validation(by[(method, s)]), run_validation(by[(baseline, s)]))
                               for s in seeds])
            long = Paired.of([difference(longer[(method, s)]["validation"] * 100,
                                         longer[(baseline, s)]["validation"] * 100) for s in seeds])
            lines.append(f"| {method} - {baseline} | {short.text()} | {long.text()} |")
    cpu = [row["cpu_s"] for row in longer.values()]
    if cpu:
        lines += ["", f"CPU-s per longer training: {min(cpu):.0f}-{max(cpu):.0f} (those of a resumed training count "
                      f"from its restart)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("bench/results/search-standard"),
                        help="a bench_search.py --out folder with results.jsonl")
    parser.add_argument("--methods", nargs="+", choices=ORDER, default=["nas-random", "proxylessnas-reinforce"])
    parser.add_argument("--seeds", type=int, nargs="+", help="default: every seed of the run")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_longer_final"))
    parser.add_argument("--report", action="store_true",
                        help="write the report from the figures kept in OUT, training nothing (a partial run's)")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--seed-of-job", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--job-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("epochs", "images", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.job:
        result = run_one(args.job, args.seed_of_job, args.job_out, args)
        writing = args.job_out.with_suffix(".writing")
        writing.write_text(json.dumps(result))
        writing.replace(args.job_out)  # whole or absent, never half a file
        shutil.rmtree(checkpoint_dir(args.job_out, args), ignore_errors=True)
        return
    cells = final_cells(args.run, args.methods, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed = [] if args.report else run_all(cells, args)
    longer = {(c["method"], c["seed"]): json.loads(cell_file(args.out, c["method"], c["seed"]).read_text())
              for c in cells if cell_file(args.out, c["method"], c["seed"]).is_file()}
    text = report(cells, longer, args, cells[0].get("budget") or {})
    if not args.report:
        text += f"\nWall time {(time.monotonic() - started) / 60:.0f} min.\n"
    (args.out / "longer.json").write_text(json.dumps([longer[k] | {"method": k[0]} for k in sorted(longer)], indent=1))
    (args.out / "longer.md").write_text(text)
    print(text)
    if failed:
        raise SystemExit(f"bench_longer_final: error: {len(failed)} network(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
