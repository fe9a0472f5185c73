"""Load run of the suggestion service: many concurrent Katib clients, long histories, health checked throughout.

Starts `katib-nas serve` as a subprocess and drives it over loopback with kubeflow-katib's stubs (Katib's own
generated client) on grpc.aio: CLIENTS clients, each on its own channel, each sending CALLS GetSuggestions
requests one after another, every request carrying a HISTORY-trial history built from the server's own
proposals (80% succeeded with accuracy and latency, 10% failed, 10% running) and asking for one new trial.
With several algorithms, client i starts at algorithm i and every client cycles through them.

Baseline in the same run, on the same server: one client sending the same requests one after another
(BASELINE_CALLS calls). Throughout both phases a probe sends a health Check every 100 ms; the server's RSS
is sampled every 250 ms together with how many calls had completed. Reported: errors (any status other
than OK, or a reply with the wrong count), latency p50/p99 under load and at baseline, throughput and its
ratio to the baseline's, health-check latency under load, server RSS (at start, its peak over the first and
over the second half of the calls, the least-squares slope over the second half) and this process's peak
RSS. The run passes when there are no errors, every health check is answered SERVING, and the server's RSS
is flat over the second half: its peak there exceeds the first half's by less than FLAT_TOLERANCE.

With --runner-trials N, a `katib-nas run` (its own suggestion server) runs at the same time as the load: N stub
trials, two at a time, each printing --noise-lines lines of 2 MiB and odd lines (a 100,000-character line with the
metric's name, a 400-digit value, nan, carriage returns, invalid UTF-8) before its metrics. Reported: trials
completed, the runner's own peak RSS and CPU time, and whether anything was lost or misread (every trial
Succeeded once, with the objective it printed). The run then also passes only if nothing was.

    .venv/bin/python bench/bench_load.py [--clients 32] [--calls 200] [--history 1000]
                                         [--algorithms nas-random] [--workers 1]
                                         [--runner-trials 0] [--noise-lines 64] [--trial-sleep 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import noisy_runner
import numpy as np
import psutil
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.runner.katib_messages import experiment_message
from katib_nas.runner.manifest import experiment_from_document

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "nas-random": REPO / "examples" / "nas-random-fashion-mnist.yaml",
    "proxylessnas-reinforce": REPO / "examples" / "proxylessnas-reinforce-fashion-mnist.yaml",
    "proxylessnas-oneshot": REPO / "examples" / "proxylessnas-oneshot-fashion-mnist.yaml",
}
HEALTH_SERVICE = "manager.v1beta1.Suggestion"
#: Largest RSS growth over the second half of the calls that still counts as flat.
FLAT_TOLERANCE = 0.05
CALL_TIMEOUT = 600.0


@dataclass
class Samples:
    """What the load produced: call latencies and errors, health latencies and failures, RSS over time."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)
    rss: list[tuple[int, int]] = field(default_factory=list)  # (calls completed, bytes)
    completed: int = 0


def start_server(workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "serve", "--port", str(port),
                                "--workers", str(workers)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return process, f"127.0.0.1:{port}"


def build_request(address: str, algorithm: str, size: int) -> pb.GetSuggestionsRequest:
    """GetSuggestions for one new trial after a `size`-trial history of the server's own proposals."""
    experiment = experiment_message(pb, experiment_from_document(yaml.safe_load(EXAMPLES[algorithm].read_text())))
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.SuggestionStub(channel).GetSuggestions(
            pb.GetSuggestionsRequest(experiment=experiment, current_request_number=size, total_request_number=size),
            timeout=CALL_TIMEOUT)
    rng = random.Random(0)
    conditions = [pb.TrialStatus.SUCCEEDED] * 8 + [pb.TrialStatus.FAILED, pb.TrialStatus.RUNNING]
    request = pb.GetSuggestionsRequest(experiment=experiment, current_request_number=1, total_request_number=size + 1)
    for index, entry in enumerate(reply.parameter_assignments):
        # named as the reply asks (or as Katib names one), without the reply's labels, as Katib sends a trial
        trial = request.trials.add(name=entry.trial_name or f"{experiment.name}-{index:05d}")
        trial.spec.parameter_assignments.assignments.extend(entry.assignments)
        trial.status.condition = rng.choice(conditions)
        if trial.status.condition == pb.TrialStatus.SUCCEEDED:
            for name, value in [("Validation-Accuracy", rng.uniform(0.7, 0.92)), ("latency-ms", rng.uniform(1, 3))]:
                trial.status.observation.metrics.add(name=name, value=f"{value:.4f}")
    return request


async def client(address: str, requests: list[pb.GetSuggestionsRequest], offset: int, calls: int,
                 samples: Samples) -> None:
    """One Katib controller: its own channel, one call after another, cycling through the requests."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SuggestionStub(channel)
        for call in range(calls):
            request = requests[(offset + call) % len(requests)]
            start = time.perf_counter()
            try:
                reply = await stub.GetSuggestions(request, timeout=CALL_TIMEOUT)
                if len(reply.parameter_assignments) != request.current_request_number:
                    samples.errors.append(f"{len(reply.parameter_assignments)} assignments for 1")
            except grpc.aio.AioRpcError as err:
                samples.errors.append(f"{err.code().name}: {err.details()}")
            samples.latencies.append(time.perf_counter() - start)
            samples.completed += 1


async def health_probe(address: str, samples: Samples, stop: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            start = time.perf_counter()
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=CALL_TIMEOUT)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    samples.health_failures.append(f"status {reply.status}")
            except grpc.aio.AioRpcError as err:
                samples.health_failures.append(f"{err.code().name}: {err.details()}")
            samples.health.append(time.perf_counter() - start)
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass


def sample_rss(server: psutil.Process, samples: Samples, stop: threading.Event) -> None:
    while not stop.is_set():
        samples.rss.append((samples.completed, server.memory_info().rss))
        stop.wait(0.25)


async def drive(address: str, requests: list[pb.GetSuggestionsRequest], clients: int, calls: int,
                samples: Samples) -> float:
    """Run `clients` clients (client i starting at request i) with a health probe; the wall time in seconds."""
    stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(address, samples, stop))
    start = time.perf_counter()
    await asyncio.gather(*(client(address, requests, i, calls, samples) for i in range(clients)))
    elapsed = time.perf_counter() - start
    stop.set()
    await probe
    return elapsed


def ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 1) if values else float("nan")


def mib(value: float) -> float:
    return round(value / 2**20, 1)


def rss_halves(samples: Samples, total: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """RSS samples taken while the first half of the calls ran, and while the second half ran."""
    return ([s for s in samples.rss if s[0] < total // 2], [s for s in samples.rss if s[0] >= total // 2])


def slope_mib_per_1000_calls(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS against completed calls."""
    calls = np.array([done for done, _ in points], dtype=float)
    if len(points) < 2 or np.ptp(calls) == 0:
        return 0.0
    return round(float(np.polyfit(calls, [rss / 2**20 for _, rss in points], 1)[0]) * 1000, 2)


def runner_figures(result: noisy_runner.RunnerResult, wanted: int) -> dict[str, object]:
    """The noisy run's figures, and whether it lost or misread anything."""
    succeeded = [row for row in result.trials if row[1] == "Succeeded"]
    return {"runner_exit_code": result.exit_code, "runner_trials_completed": len(succeeded),
            "runner_trials_run_more_than_once": sum(row[2] > 1 for row in result.trials),
            "runner_trials_misread": result.misread, "runner_peak_rss_mib": result.peak_rss_mib,
            "runner_cpu_s": result.cpu_s, "runner_wall_s": result.wall_s, "runner_trial_output_mib": result.output_mib,
            "runner_skipped_line_notes": sum("longer than" in line for line in result.stderr.splitlines()),
            "runner_nothing_lost": result.exit_code == 0 and len(succeeded) == len(result.trials) == wanted
            and not result.misread}


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-load-runner-") as folder:
        return run_load(args, Path(folder))


def run_load(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    process, address = start_server(args.workers)
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)
        server = psutil.Process(process.pid)
        rss_start = server.memory_info().rss
        requests = [build_request(address, algorithm, args.history) for algorithm in args.algorithms]
        baseline = Samples()
        baseline_seconds = asyncio.run(drive(address, requests, 1, args.baseline_calls, baseline))
        load = Samples()
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(server, load, stop), daemon=True)
        sampler.start()
        runner = noisy_runner.start(folder, args.runner_trials, 2, f"--noise-lines={args.noise_lines}", "--odd-lines",
                                    f"--sleep={args.trial_sleep}") if args.runner_trials else None
        load_seconds = asyncio.run(drive(address, requests, args.clients, args.calls, load))
        stop.set()
        sampler.join()
        beside = runner_figures(noisy_runner.finish(runner, folder), args.runner_trials) if runner else {}
        total = args.clients * args.calls
        first, second = rss_halves(load, total)
        first_peak, second_peak = max(rss for _, rss in first), max(rss for _, rss in second)
        growth = (second_peak - first_peak) / first_peak
        throughput, baseline_throughput = total / load_seconds, args.baseline_calls / baseline_seconds
        checks = {
            "zero_errors": not load.errors and not baseline.errors,
            "health_always_serving": not load.health_failures and not baseline.health_failures,
            "rss_flat_over_second_half": growth < FLAT_TOLERANCE,
            **({"runner_nothing_lost": beside["runner_nothing_lost"]} if beside else {}),
        }
        return {
            "algorithms": args.algorithms, "history_trials": args.history, "request_bytes": requests[0].ByteSize(),
            "clients": args.clients, "calls_per_client": args.calls, "server_workers": args.workers,
            "errors": len(load.errors) + len(baseline.errors), "first_error": (load.errors + baseline.errors)[:1],
            "load_seconds": round(load_seconds, 1),
            "load_p50_ms": ms(load.latencies, 50), "load_p99_ms": ms(load.latencies, 99),
            "load_calls_per_second": round(throughput, 1),
            "baseline_calls": args.baseline_calls,
            "baseline_p50_ms": ms(baseline.latencies, 50), "baseline_p99_ms": ms(baseline.latencies, 99),
            "baseline_calls_per_second": round(baseline_throughput, 1),
            "throughput_ratio_load_to_baseline": round(throughput / baseline_throughput, 2),
            "p50_ratio_load_to_baseline": round(ms(load.latencies, 50) / ms(baseline.latencies, 50), 1),
            "health_checks_under_load": len(load.health), "health_failures": len(load.health_failures),
            "health_p50_ms_under_load": ms(load.health, 50), "health_p99_ms_under_load": ms(load.health, 99),
            "health_max_ms_under_load": round(max(load.health) * 1000, 1) if load.health else None,
            "server_rss_start_mib": mib(rss_start), "server_rss_peak_first_half_mib": mib(first_peak),
            "server_rss_peak_second_half_mib": mib(second_peak), "server_rss_end_mib": mib(load.rss[-1][1]),
            "server_rss_peak_growth_second_half_pct": round(100 * growth, 2),
            "server_rss_slope_second_half_mib_per_1000_calls": slope_mib_per_1000_calls(second),
            "bench_process_peak_rss_mib": mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
            **beside,
            "checks": checks, "passed": all(checks.values()),
        }
    finally:
        process.terminate()
        process.wait(timeout=CALL_TIMEOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--calls", type=int, default=200, help="calls per client")
    parser.add_argument("--history", type=int, default=1000, help="trials in every request's history")
    parser.add_argument("--baseline-calls", type=int, default=200)
    parser.add_argument("--algorithms", type=lambda text: text.split(","), default=["nas-random"],
                        help=f"comma-separated, cycled through by every client; from {', '.join(EXAMPLES)}")
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers (its default is 1)")
    parser.add_argument("--runner-trials", type=int, default=0,
                        help="trials of a noisy `katib-nas run` beside the load (0: none)")
    parser.add_argument("--noise-lines", type=int, default=64, help="2-MiB lines each of those trials prints")
    parser.add_argument("--trial-sleep", type=float, default=0.0, help="seconds each of those trials sleeps first")
    result = run(parser.parse_args())
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
