"""Hardware awareness of the one-shot search: a latency target T at 60% of the largest candidate network.

On this CPU (one thread, batch 1) the supernet of examples/proxylessnas-oneshot-fashion-mnist.yaml is
profiled; the largest candidate network keeps, in every block, the op the table says is slowest; it is
timed and T = 0.6 x its latency. Then, for each seed, two searches run on the same Fashion-MNIST subset
with the same budget: unconstrained (cross-entropy only) and hardware-aware (the chosen latency loss
with target T). Each derived network is retrained from scratch for --retrain epochs and evaluated on the
validation split; its latency is measured like the table's entries (min over interleaved passes).
Pass: measured latency of the constrained result <= 1.05 T, accuracy within 1.5 points of the
unconstrained result.

    .venv/bin/python bench/bench_proxyless_hardware.py [--train 12000] [--epochs 8] [--seeds 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from katib_nas.contract.codec import encode
from katib_nas.contract.oneshot_settings import SearchConfig
from katib_nas.contract.spec import Architecture
from katib_nas.contract.supernet import derive
from katib_nas.runner.manifest import load_experiment
from katib_nas.suggestion.core.algorithms.proxylessnas import ProxylessNas
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.trial_image.data import load_dataset, split_dataset
from katib_nas.trial_image.proxyless.latency_loss import LatencyModel
from katib_nas.trial_image.proxyless.profiler import Timing, profile_supernet, time_network_ms
from katib_nas.trial_image.proxyless.search import Optimisation, run_search
from katib_nas.trial_image.proxyless.search_trial import retrain, split_search_data

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "proxylessnas-oneshot-fashion-mnist.yaml"
CPU = torch.device("cpu")


def example_supernet(widths: list[int] | None) -> Architecture:
    """The example's supernet, optionally with other stage widths (stem = first width)."""
    spec = load_experiment(EXAMPLE)
    settings = dict(spec.algorithm_settings)
    if widths:
        settings.update(stem_width=str(widths[0]), stage_widths=",".join(map(str, widths)))
    info = ExperimentInfo(spec.name, spec.algorithm, settings, spec.objective.metric, nas_config=spec.nas_config)
    return ProxylessNas().validate(info)[1]


def latency_ms(arch: Architecture, timing: Timing, threads: int, passes: int = 3) -> float:
    torch.set_num_threads(1)
    try:
        return min(time_network_ms(arch, CPU, timing) for _ in range(passes))
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=12000, help="training images (weight + architecture splits)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--retrain", type=int, default=3)
    parser.add_argument("--loss", choices=("mullog", "addlin"), nargs="+", default=["mullog"],
                        help="hardware-aware loss(es); each is compared with the same unconstrained search")
    parser.add_argument("--beta", type=float, default=0.6)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--archlr", type=float, default=0.01)
    parser.add_argument("--arch-every", type=int, default=5, help="weight steps per architecture step")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--widths", type=int, nargs=3, help="stage widths instead of the example's 16 32 64")
    args = parser.parse_args()
    timing = Timing()
    torch.set_num_threads(1)
    supernet = example_supernet(args.widths)
    table = profile_supernet(supernet, CPU, timing)
    model = LatencyModel.from_table(table, supernet)
    slowest = [max(range(len(row)), key=row.__getitem__) for row in model.options_ms]
    largest = derive(supernet, slowest)
    largest_ms = latency_ms(largest, timing, args.threads)
    target = 0.6 * largest_ms
    print(f"largest candidate network {encode(largest)}: measured {largest_ms:.3f} ms, predicted "
          f"{table.predict_ms(largest):.3f} ms; target T = {target:.3f} ms")
    torch.set_num_threads(args.threads)
    split = split_dataset(load_dataset("fashion-mnist", None), 0.1, args.train)
    data = split_search_data(split, 0.2, CPU)
    optimisation = Optimisation(batch_size=128, lr=0.05, arch_every=args.arch_every)
    rows = []
    for seed in args.seeds:
        for name, loss in [("unconstrained", "none")] + [(f"aware-{loss}", loss) for loss in args.loss]:
            config = SearchConfig(epochs=args.epochs, warmup=args.warmup, loss=loss, target=target, beta=args.beta,
                                  lambda_=args.lam, archlr=args.archlr, retrain=args.retrain, seed=seed)
            torch.manual_seed(seed)
            _, result = run_search(supernet, config, optimisation, data, model)
            _, accuracy = retrain(result.derived, data, config, optimisation)
            measured = latency_ms(result.derived, timing, args.threads)
            rows.append((seed, name, accuracy, measured, table.predict_ms(result.derived), encode(result.derived)))
            print(f"seed {seed} {name:16s} accuracy {accuracy * 100:.2f}%  latency {measured:.3f} ms "
                  f"(predicted {rows[-1][4]:.3f}; {measured / target:.3f} T)  {rows[-1][5]}", flush=True)
    for seed in args.seeds:
        free, *aware_rows = [r for r in rows if r[0] == seed]
        for aware in aware_rows:
            print(f"seed {seed} {aware[1]}: latency {aware[3] / target:.3f} T (limit 1.05), accuracy gap "
                  f"{(free[2] - aware[2]) * 100:+.2f} points (limit 1.5)")


if __name__ == "__main__":
    main()
