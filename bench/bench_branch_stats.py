"""Do branch statistics rank the same branches from seed to seed, and do they rank what matters?

The network is the EnvelopeNet example's start (every branch in every cell), trained as an iteration
trial trains it (`katib-nas trial --branch-stats`: the project's model and trainer, one epoch on IMAGES
Fashion-MNIST images) with several seeds. For every branch it records:
  taylor-late       the trial's statistic: mean |sum over the branch output of y * dloss/dy| per sample,
                    over the last half of the steps
  taylor-all        the same over every step
  mean-square-late  the mean squared activation of the branch output, over the last half
  mean-square-all   the same over every step (NAC's statistic as this project computed it before)
  ablation          the validation loss increase when the branch's output is replaced by zeros, after
                    training (2,000 validation images): the direct measure of what the branch is worth
Figures: Spearman's rho of each statistic between every pair of seeds (mean, min), and its rho with the
ablation of the same run (mean over seeds).

    .venv/bin/python bench/bench_branch_stats.py --images 5000 20000 --seeds 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_search import example, experiment_info

from katib_nas.contract.codec import encode
from katib_nas.suggestion.core.algorithms.envelopenet.config import resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import initial_network

STATISTICS = ("taylor-late", "taylor-all", "mean-square-late", "mean-square-all", "ablation")


def start_network(width: str) -> str:
    info = experiment_info(example("envelopenet-fashion-mnist"), {"width": width}, "branch-stats")
    return encode(initial_network(resolve(info)))


def measure(architecture: str, images: int, seed: int) -> dict[str, list[float]]:
    """Every statistic of every branch (network order) after one epoch on `images` images with `seed`."""
    import torch

    from katib_nas.contract.codec import decode
    from katib_nas.trial_image.cells import ConcatBody
    from katib_nas.trial_image.data import load_dataset, split_dataset
    from katib_nas.trial_image.model import build_model
    from katib_nas.trial_image.runtime import channels_last
    from katib_nas.trial_image.trainer import Tensors, TrainConfig, evaluate_trained, train

    torch.set_num_threads(1)
    split = split_dataset(load_dataset("fashion-mnist", None), 0.1, images)
    data = Tensors(*(channels_last(torch.from_numpy(a)) for a in
                     (split.train_x, split.train_y, split.val_x[:2000], split.val_y[:2000])))
    torch.manual_seed(seed)
    model = build_model(decode(architecture)).to(memory_format=torch.channels_last)
    bodies = [body for body in model.bodies() if isinstance(body, ConcatBody)]
    halfway: dict[str, Any] = {}

    def snapshot(step: int, steps: int) -> None:
        if step == steps // 2:
            halfway.update(sq=[b.channel_sq_sum.clone() for b in bodies], steps=[b.stat_steps for b in bodies],
                           taylor=[b.taylor_sum.clone() for b in bodies], samples=[b.taylor_samples for b in bodies])

    model.record_branch_stats(True)
    train(model, data, TrainConfig(epochs=1, seed=seed), before_step=snapshot)
    model.record_branch_stats(False)
    found: dict[str, list[float]] = {name: [] for name in STATISTICS}
    for i, body in enumerate(bodies):
        found["taylor-all"] += body.taylor_stats()
        found["mean-square-all"] += body.branch_stats()
        late_taylor = (body.taylor_sum - halfway["taylor"][i]) / (body.taylor_samples - halfway["samples"][i])
        late_sq = (body.channel_sq_sum - halfway["sq"][i]) / (body.stat_steps - halfway["steps"][i])
        found["taylor-late"] += late_taylor.tolist()
        start = 0
        for width in body.widths:
            found["mean-square-late"].append(float(late_sq[start:start + width].mean()))
            start += width
    base, _ = evaluate_trained(model, data)
    for body in bodies:
        for branch in body.branches:
            handle = branch.register_forward_hook(lambda module, inputs, out: torch.zeros_like(out))
            loss, _ = evaluate_trained(model, data)
            handle.remove()
            found["ablation"].append(loss - base)
    return found


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def report(results: dict[int, dict[int, dict[str, list[float]]]], architecture: str) -> str:
    lines = [f"Network: `{architecture}`", "",
             "| images (steps) | statistic | rho between seeds: mean (min) | rho with the ablation: mean |",
             "|---|---|---|---|"]
    for images, by_seed in sorted(results.items()):
        seeds = sorted(by_seed)
        for name in STATISTICS:
            between = [spearman(by_seed[a][name], by_seed[b][name]) for a, b in itertools.combinations(seeds, 2)]
            with_ablation = [spearman(by_seed[s][name], by_seed[s]["ablation"]) for s in seeds]
            lines.append(f"| {images} ({-(-images // 128)}) | {name} | {statistics.mean(between):.2f} "
                         f"({min(between):.2f}) | {statistics.mean(with_ablation):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--width", default="16")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_branch_stats"))
    parser.add_argument("--job", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    architecture = start_network(args.width)
    if args.job:
        images, seed = args.job
        (args.out / f"stats-{images}-{seed}.json").write_text(json.dumps(measure(architecture, images, seed)))
        return
    pending = [(images, seed) for images in args.images for seed in args.seeds]
    running: list[subprocess.Popen] = []
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < args.jobs:
            images, seed = pending.pop(0)
            if not (args.out / f"stats-{images}-{seed}.json").is_file():
                running.append(subprocess.Popen([sys.executable, __file__, "--job", str(images), str(seed),
                                                 "--width", args.width, "--out", str(args.out)]))
        running = [p for p in running if p.poll() is None]
        time.sleep(2)
    results = {images: {seed: json.loads((args.out / f"stats-{images}-{seed}.json").read_text())
                        for seed in args.seeds} for images in args.images}
    text = report(results, architecture) + f"\nWall time {(time.monotonic() - started) / 60:.0f} min.\n"
    (args.out / "branch_stats.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
