"""Final training of constructed EnvelopeNets against a plain CNN of similar size, scored on the test set.

Each network is trained by `katib-nas trial` (a real subprocess, the trainer every trial uses) for the
same budget on the Fashion-MNIST training part (54,000 images; the fixed 6,000-image validation split is
held out) and reported with `--test` on the 10,000 t10k images, which no construction trial ever saw.

Constructed networks come from bench_envelopenet.py's work directories (the last trial of each
`normal-<seed>` run) or from --architecture. The baseline is a plain CNN: a 3x3 stem and six 3x3
conv-BN-ReLU layers in three stages of widths k, 2k, 4k (2x2 max pooling between stages), with k chosen so
that its parameter count is closest to the constructed network's.

    .venv/bin/python bench/bench_envelopenet_retrain.py --epochs 10 [--seeds 1 2 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from katib_nas.contract.codec import decode
from katib_nas.contract.metric_format import KATIB_DEFAULT_REGEX
from katib_nas.trial_image.measure import count_parameters
from katib_nas.trial_image.model import build_model

REPO = Path(__file__).resolve().parents[1]
HEADER = "in28x28x1-cls10"


def plain_cnn(k: int) -> str:
    return f"{HEADER}-stem{k}/w{k}:c3:c3/w{2 * k}s2:c3:c3/w{4 * k}s2:c3:c3"


def parameters(text: str) -> int:
    return count_parameters(build_model(decode(text)))


def matching_plain_cnn(target: int) -> str:
    """The plain CNN whose parameter count is closest to `target`."""
    return min((plain_cnn(k) for k in range(4, 257, 2)), key=lambda text: abs(parameters(text) - target))


def constructed(workdir: Path, seed: int) -> str:
    """The architecture of the last trial (the constructed network) of bench_envelopenet's run for `seed`."""
    with open(workdir / f"normal-{seed}" / "run" / "report" / "trials.csv") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["seq"]))
    return rows[-1]["architecture"]


def train(text: str, epochs: int, threads: int, seed: int) -> dict[str, float]:
    """Train one network with `katib-nas trial --test`; its final metrics and wall time."""
    command = [str(Path(sys.executable).with_name("katib-nas")), "trial", f"--architecture={text}",
               f"--epochs={epochs}", f"--threads={threads}", f"--seed={seed}", "--test"]
    start = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"trial failed ({done.returncode}): {done.stderr[-2000:]}")
    metrics = {m.group(1): float(m.group(2)) for m in re.finditer(KATIB_DEFAULT_REGEX, done.stdout)}
    return {"seconds": round(time.perf_counter() - start, 1), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3],
                        help="bench_envelopenet seeds whose constructed network is retrained")
    parser.add_argument("--architecture", action="append", default=[],
                        help="retrain this architecture text too (repeatable)")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-envelopenet")
    parser.add_argument("--train", nargs="+", choices=("constructed", "baseline"), default=["constructed", "baseline"],
                        help="which of each pair to train (run the two halves as separate processes to use two cores)")
    args = parser.parse_args()
    networks = [(f"constructed seed {seed}", constructed(args.workdir, seed)) for seed in args.seeds]
    networks += [(f"given {i}", text) for i, text in enumerate(args.architecture, 1)]
    for name, text in networks:
        baseline = matching_plain_cnn(parameters(text))
        pair = {"constructed": (name, text), "baseline": (f"plain CNN for {name}", baseline)}
        for label, arch in (pair[which] for which in args.train):
            result = train(arch, args.epochs, args.threads, seed=0)
            print(json.dumps({"network": label, "architecture": arch, "epochs": args.epochs,
                              "params": int(result["params"]), "flops": int(result["flops"]),
                              "test_accuracy": result["Test-Accuracy"],
                              "validation_accuracy": result["Validation-Accuracy"],
                              "seconds": result["seconds"]}), flush=True)


if __name__ == "__main__":
    main()
