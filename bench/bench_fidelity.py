"""Does a truncated trial rank networks as the final training does? Kendall tau per search space.

For each space, NETWORKS networks are drawn as its search would draw them (nas-random from its example's
nasConfig; the proxylessnas example's space sampled uniformly; EnvelopeNet networks that the example's
construction reaches, with random pruning so that they differ), each trained twice with `katib-nas trial`'s
code: at the truncated budget the examples give a trial (TRUNCATED_EPOCHS epoch(s) on TRUNCATED_IMAGES
images) and at the final budget of bench_search.py. Both are scored on the same 6,000 validation images.
The figure is Kendall's tau between the two accuracies over the space's networks (and Spearman's rho).

    .venv/bin/python bench/bench_fidelity.py                        # 20 networks per space
    .venv/bin/python bench/bench_fidelity.py --networks 6 --spaces nas-random   # a quick look

Every network runs in its own subprocess with one torch thread, --jobs side by side; results in
OUT/fidelity.json and OUT/fidelity.md. Each network's figures are kept in OUT as they come and a rerun trains
only what is missing; a kept file of another network or budget (flags) stops the run before any training.

A cheaper budget can be set against an earlier run's two budgets without training those again: with
`--final-epochs 0 --reference DIR...` only the truncated budget is trained, and the report gives its rank
agreement with the truncated and final accuracies in those folders over the same networks (matched by
architecture; a folder trained with `--final-epochs 0` gives only truncated ones):

    .venv/bin/python bench/bench_fidelity.py --spaces proxylessnas --networks 6 --final-epochs 0 \
        --reference bench/results/fidelity-2x30k bench/results/fidelity-final-2x30k-vs-6x30k
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_search import budget_differences, example, experiment_info, run_network_trial
from job_pool import run_jobs

from katib_nas.contract.codec import encode
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.envelopenet.config import resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import initial_network, next_network
from katib_nas.suggestion.core.algorithms.envelopenet.stats import Statistics

SPACES = ("nas-random", "proxylessnas", "envelopenet")
#: A network's truncated accuracy, kept beside its result file until the final training ends.
SIDE_SUFFIX = ".truncated.json"


def side_file(job_out: Path) -> Path:
    return job_out.with_suffix(SIDE_SUFFIX)


def sample(space: str, count: int) -> list[str]:
    """`count` distinct architectures of the space, drawn as its search draws them (fixed seeds)."""
    if space == "nas-random":
        info = experiment_info(example("nas-random-fashion-mnist"), {"seed": "7"}, "fidelity")
        return [a["architecture"] for a in engine.suggest(info, [], count, 0).assignments]
    if space == "proxylessnas":
        info = experiment_info(example("proxylessnas-reinforce-fashion-mnist"),
                               {"seed": "7", "reinforce_lr": "0", "latency_target_ms": "0"}, "fidelity")
        return [a["architecture"] for a in engine.suggest(info, [], count, 0).assignments]
    return envelope_networks(count)


def envelope_networks(count: int) -> list[str]:
    """Networks of the EnvelopeNet example's construction: every iteration's network of random-prune runs."""
    info = experiment_info(example("envelopenet-fashion-mnist"), {"random_prune": "true"}, "fidelity")
    found: list[str] = []
    seed = 0
    while len(found) < count:
        config = resolve(dataclasses.replace(info, settings={**info.settings, "seed": str(seed)}))
        network = initial_network(config)
        for iteration in range(config.settings.iterations + 1):
            text = encode(network)
            if text not in found:
                found.append(text)
            stats = Statistics(tuple(tuple(1.0 for _ in c.ops) for c in network.cells),
                               tuple(tuple(1.0 for _ in c.skips) for c in network.cells))
            network = next_network(network, stats, config, iteration)
        seed += 1
    return found[:count]


def kendall_spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    return float(kendalltau(x, y)[0]), float(spearmanr(x, y)[0])


def budget(args: argparse.Namespace) -> dict[str, int]:
    """What a network's figures were trained with; a kept result file is reused only under the same one."""
    return {"seed": args.seed, "truncated_epochs": args.truncated_epochs, "truncated_images": args.truncated_images,
            "final_epochs": args.final_epochs, "final_images": args.final_images if args.final_epochs else 0}


def checkpoint_dir(job_out: Path, args: argparse.Namespace) -> Path:
    """Where the final training keeps its per-epoch checkpoint; named by its budget, so another run's flags
    never meet it."""
    return job_out.with_name(f"{job_out.stem}.final-{args.final_epochs}x{args.final_images}-seed{args.seed}")


def run_one(architecture: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both budgets' accuracies of one network. The truncated one is kept in a side file as soon as it is known,
    and the final training checkpoints every epoch, so a stopped run loses at most the epoch in progress (the
    CPU-seconds reported for a resumed final training are those after the restart)."""
    import torch

    torch.set_num_threads(1)
    partial = side_file(args.job_out)
    wanted = {"architecture": architecture, "epochs": args.truncated_epochs, "images": args.truncated_images,
              "seed": args.seed}
    kept = json.loads(partial.read_text()) if partial.is_file() else {}
    if {k: kept.get(k) for k in wanted} != wanted:
        started = time.process_time()
        truncated = run_network_trial(architecture, args.seed, args.truncated_epochs, args.truncated_images, None)
        if not truncated:
            raise SystemExit(f"bench_fidelity: error: {args.job_out.name}: the truncated training failed")
        kept = wanted | {"accuracy": float(truncated["Validation-Accuracy"]), "cpu_s": time.process_time() - started}
        partial.write_text(json.dumps(kept))
    started = time.process_time()
    final = {}
    if args.final_epochs:
        final = run_network_trial(architecture, args.seed, args.final_epochs, args.final_images, None,
                                  checkpoint_dir=checkpoint_dir(args.job_out, args))
        if not final:
            raise SystemExit(f"bench_fidelity: error: {args.job_out.name}: the final training failed "
                             f"(its checkpoint is kept in {checkpoint_dir(args.job_out, args)})")
    return {"architecture": architecture, "truncated": kept["accuracy"],
            "final": float(final.get("Validation-Accuracy", "nan")), "truncated_cpu_s": kept["cpu_s"],
            "final_cpu_s": time.process_time() - started, "budget": budget(args)}


def run_all(args: argparse.Namespace) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every network's figures, training those not kept in OUT yet; also the networks whose training failed."""
    planned = [(space, text, args.out / f"fidelity-{space}-{index}.json")
               for space in args.spaces for index, text in enumerate(sample(space, args.networks))]
    for _, text, out in planned:  # a kept file from other flags or another draw stops the run before any training
        if out.is_file():
            check_kept(out, text, args)
    failed = run_jobs([([sys.executable, __file__, "--job", text, "--job-out", str(out), *passthrough(args)], out)
                       for _, text, out in planned if not out.is_file()], args.jobs)
    results = {space: [json.loads(out.read_text()) for s, _, out in planned if s == space and out.is_file()]
               for space in args.spaces}
    return results, failed


def check_kept(out: Path, architecture: str, args: argparse.Namespace) -> None:
    """Stop with one line when a kept result file is not this network at this budget."""
    kept = json.loads(out.read_text())
    if kept.get("architecture") != architecture:
        raise SystemExit(f"bench_fidelity: error: {out} holds another network than this run draws "
                         f"({kept.get('architecture')!r}); use another --out")
    if kept.get("budget") is None:
        raise SystemExit(f"bench_fidelity: error: {out} was written before budgets were recorded; use another --out")
    if kept["budget"] != budget(args):
        raise SystemExit(f"bench_fidelity: error: {out} was trained at another budget "
                         f"({budget_differences(kept['budget'], budget(args))}); use another --out or the same flags")


def passthrough(args: argparse.Namespace) -> list[str]:
    return ["--seed", str(args.seed),
            "--truncated-epochs", str(args.truncated_epochs), "--truncated-images", str(args.truncated_images),
            "--final-epochs", str(args.final_epochs), "--final-images", str(args.final_images)]


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
           reference: Reference, failed: list[str]) -> str:
    final = f"{args.final_epochs} epoch(s) on {args.final_images} images" if args.final_epochs else "not trained"
    lines = [f"Truncated: {args.truncated_epochs} epoch(s) on {args.truncated_images} images; final: {final}; "
             f"validation on 6,000 images; training seed {args.seed}.", ""]
    if failed:
        lines += [f"Failed, left out of every table (their errors are above in the output): {', '.join(failed)}.", ""]
    if args.final_epochs:
        lines += agreement_table(results, "final", "final")
    if args.reference:
        names = " and ".join(str(folder) for folder in args.reference)
        for key in ("truncated", "final"):
            table = agreement_table({space: [r | {"reference": reference.accuracies[r["architecture"]][key]}
                                             for r in rows if r["architecture"] in reference.accuracies]
                                     for space, rows in results.items()}, "reference", f"reference {key}")
            if len(table) > 2:  # a header alone: those folders hold no accuracies of this budget
                lines += ["", f"Against the {key} accuracies ({reference.budgets[key]}) of {names} (same networks):",
                          ""] + table
    return "\n".join(lines) + "\n"


def agreement_table(results: dict[str, list[dict[str, Any]]], key: str, name: str) -> list[str]:
    """Kendall tau and Spearman rho between each network's truncated accuracy and its `key` accuracy, per space."""
    lines = [f"| space | networks | Kendall tau | Spearman rho | truncated acc % (min-max) | {name} acc % (min-max) "
             "| CPU-s per truncated trial |", "|---|---|---|---|---|---|---|"]
    for space, rows in results.items():
        rows = [r for r in rows if r["truncated"] == r["truncated"] and r[key] == r[key]]
        if len(rows) < 3:
            continue
        tau, rho = kendall_spearman([r["truncated"] for r in rows], [r[key] for r in rows])
        lines.append(f"| {space} | {len(rows)} | {tau:.3f} | {rho:.3f} "
                     f"| {min(r['truncated'] for r in rows) * 100:.1f}-{max(r['truncated'] for r in rows) * 100:.1f} "
                     f"| {min(r[key] for r in rows) * 100:.1f}-{max(r[key] for r in rows) * 100:.1f} "
                     f"| {statistics.mean(r['truncated_cpu_s'] for r in rows):.0f} |")
    return lines


@dataclasses.dataclass
class Reference:
    """Earlier runs' truncated and final accuracies by architecture, and the one budget each of the two is at."""

    accuracies: dict[str, dict[str, float]]
    budgets: dict[str, str]


def read_reference(folders: list[Path]) -> Reference:
    """Earlier runs' accuracies by architecture, from their per-network files; a number one folder lacks (NaN)
    comes from another. Accuracies of one kind at two budgets stop the run: their ranks could not be compared."""
    found: dict[str, dict[str, float]] = {}
    budgets: dict[str, set[str]] = {"truncated": set(), "final": set()}
    for folder in folders:
        paths = [p for p in sorted(folder.glob("fidelity-*-*.json")) if not p.name.endswith(SIDE_SUFFIX)]
        if not paths:
            raise SystemExit(f"bench_fidelity: error: --reference {folder}: no fidelity-SPACE-N.json files there")
        for path, row in zip(paths, map(json.loads, map(Path.read_text, paths))):
            if row.get("budget") is None:
                raise SystemExit(f"bench_fidelity: error: --reference {path} was written before budgets were recorded")
            for key in budgets:
                if row[key] == row[key]:
                    budgets[key].add(budget_text(row["budget"], key))
            known = found.setdefault(row["architecture"], {})
            known.update({k: v for k, v in row.items() if v == v or k not in known})
    for key, seen in budgets.items():
        if len(seen) > 1:
            raise SystemExit(f"bench_fidelity: error: --reference folders hold {key} accuracies at "
                             f"{len(seen)} budgets ({'; '.join(sorted(seen))}); give folders of one budget")
    return Reference(found, {key: next(iter(seen), "") for key, seen in budgets.items()})


def budget_text(recorded: dict[str, int], key: str) -> str:
    """A recorded budget's truncated or final part, as the report names it."""
    return f"{recorded[f'{key}_epochs']} epoch(s) on {recorded[f'{key}_images']} images, seed {recorded['seed']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES))
    parser.add_argument("--truncated-epochs", type=int, default=1)
    parser.add_argument("--truncated-images", type=int, default=12000, help="the examples' trial budget")
    parser.add_argument("--final-epochs", type=int, default=2, help="0: train only the truncated budget")
    parser.add_argument("--final-images", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed of every network (another seed measures the trials' own noise)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reference", type=Path, nargs="+",
                        help="earlier runs' folders over the same networks: report against their two budgets")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_fidelity"))
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--job-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        result = run_one(args.job, args)
        written = args.job_out.with_suffix(".writing")
        written.write_text(json.dumps(result))
        written.replace(args.job_out)  # whole or absent, never half a file
        side_file(args.job_out).unlink(missing_ok=True)
        shutil.rmtree(checkpoint_dir(args.job_out, args), ignore_errors=True)
        return
    reference = read_reference(args.reference) if args.reference else Reference({}, {})  # fails before training
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results, failed = run_all(args)
    text = report(results, args, reference, failed) + f"\nWall time {(time.monotonic() - started) / 60:.0f} min.\n"
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=1))
    (args.out / "fidelity.md").write_text(text)
    print(text)
    if failed:
        raise SystemExit(f"bench_fidelity: error: {len(failed)} network(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
