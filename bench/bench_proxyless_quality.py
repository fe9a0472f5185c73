"""Search quality of proxylessnas against nas-random at an equal budget of trained trials, several seeds.

Every searcher proposes TRIALS networks one at a time through the suggestion engine (the code path of
`katib-nas serve`), each trained as `katib-nas trial` trains it (same builder, trainer, data split,
latency measurement) for one epoch on a Fashion-MNIST subset, and the finished trial goes back into the
history. Stages are narrower than in the example by default (--widths 8 16 32), so that the whole
comparison fits a shared 2-core machine. The figure per run is the best validation accuracy found.

Searchers (same budget, same seeds):
  proxylessnas-reinforce  examples/proxylessnas-reinforce-fashion-mnist.yaml's settings and space
  uniform-same-space      the same space sampled uniformly (reinforce with reinforce_lr 0): isolates the
                          value of the REINFORCE update from the value of the space
  nas-random              nas-random with its own layout rules on the same MBConv candidates (kernel 3/5/7,
                          expand 3/6), the same widths and stride 1/2 as candidate parameters, since
                          nas-random opens stages from candidates (zero is left out: nas-random cells have
                          no residual, so zero would cut the network)

    .venv/bin/python bench/bench_proxyless_quality.py [--trials 10] [--seeds 0 1 2] [--train 3000]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml

from katib_nas.contract.codec import decode
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial
from katib_nas.trial_image.data import Split, load_dataset, split_dataset
from katib_nas.trial_image.measure import measure_latency_ms
from katib_nas.trial_image.model import build_model
from katib_nas.trial_image.runtime import channels_last
from katib_nas.trial_image.trainer import Tensors, TrainConfig, evaluate, train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "proxylessnas-reinforce-fashion-mnist.yaml"


def experiments(seed: int, widths: list[int]) -> dict[str, ExperimentInfo]:
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    settings = {s["name"]: str(s["value"]) for s in spec["algorithm"]["algorithmSettings"]}
    settings.update(seed=str(seed), stem_width=str(widths[0]), stage_widths=",".join(map(str, widths)))
    base: dict[str, Any] = {"objective_metric": "Validation-Accuracy",
                            "additional_metrics": tuple(spec["objective"]["additionalMetricNames"])}
    random_space = copy.deepcopy(spec["nasConfig"])
    random_space["operations"] = [random_space["operations"][0]]
    random_space["operations"][0]["parameters"] += [
        {"name": "num_filter", "parameterType": "categorical", "feasibleSpace": {"list": [str(w) for w in widths]}},
        {"name": "stride", "parameterType": "categorical", "feasibleSpace": {"list": ["1", "2"]}}]
    return {
        "proxylessnas-reinforce": ExperimentInfo("q", "proxylessnas", settings, nas_config=spec["nasConfig"], **base),
        "uniform-same-space": ExperimentInfo("q", "proxylessnas", {**settings, "reinforce_lr": "0"},
                                             nas_config=spec["nasConfig"], **base),
        "nas-random": ExperimentInfo("q", "nas-random", {"seed": str(seed), "stem_width": str(widths[0]),
                                                         "skip_probability": "0.2"}, nas_config=random_space,
                                     **base),
    }


def run_trial(text: str, split: Split, seed: int, threads: int) -> dict[str, float]:
    arch = decode(text)
    torch.manual_seed(seed)
    model = build_model(arch).to(memory_format=torch.channels_last)
    tensors = Tensors(*(channels_last(torch.from_numpy(a))
                        for a in (split.train_x, split.train_y, split.val_x, split.val_y)))
    train(model, tensors, TrainConfig(epochs=1, batch_size=128, lr=0.05, seed=seed))
    _, accuracy = evaluate(model, tensors.val_x, tensors.val_y)
    model = model.to(memory_format=torch.contiguous_format)  # latency in the default layout, as the trial does
    torch.set_num_threads(1)
    latency = measure_latency_ms(model, arch.input_shape)
    torch.set_num_threads(threads)
    return {"Validation-Accuracy": accuracy, "latency-ms": latency}


def search(info: ExperimentInfo, trials: int, split: Split, seed: int, threads: int) -> list[float]:
    history: list[TrialRecord] = []
    accuracies = []
    for k in range(trials):
        proposal = engine.suggest(info, history, 1, k)
        assignments = proposal.assignments[0]
        metrics = run_trial(assignments["architecture"], split, seed * 1000 + k, threads)
        accuracies.append(metrics["Validation-Accuracy"])
        name = proposal.trial_names[0] if proposal.trial_names else f"t{k}"  # the name Katib would give it
        history.append(make_trial(name, assignments, "SUCCEEDED", [(n, str(v)) for n, v in metrics.items()]))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--widths", type=int, nargs=3, default=[8, 16, 32],
                        help="stage widths (stem = first), for proxylessnas; num_filter choices for nas-random")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--searchers", nargs="+", default=["proxylessnas-reinforce", "uniform-same-space",
                                                           "nas-random"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = split_dataset(load_dataset("fashion-mnist", None), args.val_fraction, args.train)
    best: dict[str, list[float]] = {}
    for seed in args.seeds:
        for name, info in experiments(seed, args.widths).items():
            if name not in args.searchers:
                continue
            accuracies = search(info, args.trials, split, seed, args.threads)
            best.setdefault(name, []).append(max(accuracies))
            last_half = statistics.mean(accuracies[len(accuracies) // 2:])
            print(f"seed {seed} {name:24s} best {max(accuracies) * 100:.2f}%  "
                  f"mean {statistics.mean(accuracies) * 100:.2f}%  last-half mean {last_half * 100:.2f}%", flush=True)
    print(f"{args.trials} trials x 1 epoch on {args.train} images (validation {len(split.val_y)}), widths "
          f"{args.widths}, seeds {args.seeds}")
    for name, values in best.items():
        print(f"{name:24s} best-of-run accuracy: mean {statistics.mean(values) * 100:.2f}%  per seed "
              + ", ".join(f"{v * 100:.2f}" for v in values))


if __name__ == "__main__":
    main()
