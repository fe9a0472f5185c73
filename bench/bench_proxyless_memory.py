"""Peak memory of one ProxylessNAS training step against the all-paths mixed op on the same supernet.

Every variant runs in a fresh Python subprocess: build the supernet (7 candidates per block:
MBConv 3/5/7 x expand 3/6, and zero), run one untimed step on a batch of 2 (so that lazy
one-time allocations of torch happen before measuring), read the resident set (psutil), run one
step on a batch of BATCH and read the process's peak resident set (resource.getrusage
ru_maxrss). The figure is peak minus the resident set before the step: the memory the step
itself needed (activations kept for backward, gradients, temporaries). tracemalloc cannot see
torch's CPU allocations, so RSS is what is measured.

Variants:
  binarized-weight   one sampled path per block, forward + backward + SGD step
  binarized-arch     two sampled paths per block with binary gates (the unused one without autograd),
                     forward + backward + logit update (the architecture step)
  all-paths          every candidate computed and mixed by softmax(alpha) (DARTS-style mixed op),
                     forward + backward + SGD step on weights and logits

    .venv/bin/python bench/bench_proxyless_memory.py [--batch 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

SUPERNET_OPS = "mb3e3_mb3e6_mb5e3_mb5e6_mb7e3_mb7e6_zero"
SUPERNET = f"in28x28x1-cls10-stem16/w16:{SUPERNET_OPS}@r:{SUPERNET_OPS}@r/w32s2:{SUPERNET_OPS}@r:{SUPERNET_OPS}@r" \
           f"/w64s2:{SUPERNET_OPS}@r:{SUPERNET_OPS}@r"
VARIANTS = ("binarized-weight", "binarized-arch", "all-paths")


def child(variant: str, batch: int) -> dict[str, float]:
    """Runs inside the subprocess: one step of `variant`, memory in MiB."""
    import psutil
    import torch
    import torch.nn.functional as F

    from katib_nas.contract.codec import decode
    from katib_nas.contract.oneshot_settings import SearchConfig
    from katib_nas.trial_image.cells import ChoiceBody
    from katib_nas.trial_image.proxyless.search import Optimisation, SupernetSearch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    supernet = decode(SUPERNET)
    search = SupernetSearch(supernet, SearchConfig(loss="none"), Optimisation(), None, torch.device("cpu"), 10)
    mixing = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(7)) for _ in supernet.cells)

    def all_paths_forward(body: ChoiceBody, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return sum(w * alternative(x) for w, alternative in zip(weights, body.alternatives))

    if variant == "all-paths":
        for body, alpha in zip(search.blocks, mixing):
            body.forward = (lambda b, a: (lambda x: all_paths_forward(b, torch.softmax(a, 0), x)))(body, alpha)
        optimizer = torch.optim.SGD(list(search.network.parameters()) + list(mixing), lr=0.01)

    def step(size: int) -> None:
        x = torch.randn(size, 1, 28, 28)
        y = torch.randint(0, 10, (size,))
        if variant == "binarized-weight":
            search.weight_step(x, y)
        elif variant == "binarized-arch":
            search.arch_step(x, y)
        else:
            loss = F.cross_entropy(search.network(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    step(2)
    before = psutil.Process().memory_info().rss / 2**20
    step(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"before_mib": before, "peak_mib": peak, "step_mib": peak - before}


def measure(variant: str, batch: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--batch", str(batch)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:  # interleaved, so drift in the machine's state hits every variant alike
            results[variant].append(measure(variant, args.batch))
    step = {v: statistics.median(r["step_mib"] for r in rows) for v, rows in results.items()}
    print(f"supernet {SUPERNET}\nbatch {args.batch}, {args.repeats} fresh subprocesses per variant (median)")
    for variant in VARIANTS:
        rows = results[variant]
        before = statistics.median(r["before_mib"] for r in rows)
        peak = statistics.median(r["peak_mib"] for r in rows)
        print(f"{variant:18s} step {step[variant]:8.1f} MiB  (RSS before {before:.1f}, peak {peak:.1f})  "
              f"ratio to all-paths "
              f"{step[variant] / step['all-paths']:.3f}")


if __name__ == "__main__":
    main()
