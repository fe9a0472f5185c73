"""GetSuggestions latency and server memory, measured through Katib's own client stubs.

Starts `katib-nas serve` as a subprocess, builds a history of HISTORY trials from
an example (the nas-random one by default), then times CALLS GetSuggestions requests
(one new trial each, as Katib asks with parallelTrialCount 1) and, as the same-run
baseline, health Check round trips over the same channel. Server RSS is read from
/proc after start and after all calls.

    .venv/bin/python bench/bench_suggestion.py [--history 1000] [--calls 1000]
    .venv/bin/python bench/bench_suggestion.py --example examples/proxylessnas-reinforce-fashion-mnist.yaml \
        --history-step 2   # REINFORCE replays the whole history on every call
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.runner.katib_messages import experiment_message
from katib_nas.runner.manifest import experiment_from_document

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "nas-random-fashion-mnist.yaml"


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("katib-nas")
    process = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
                               stderr=subprocess.DEVNULL)
    return process, f"127.0.0.1:{port}"


def build_history(stub: pb_grpc.SuggestionStub, experiment: pb.Experiment, size: int, step: int) -> list[pb.Trial]:
    """`size` trials: with step 0, one request for all of them (80% succeeded with Validation-Accuracy and
    latency-ms, 10% failed, 10% running); with step k, k new trials per request, each answered from the
    history so far (as Katib asks with parallelTrialCount k; an algorithm that learns from the history sees
    it grow), 8 in 9 succeeded with every metric the experiment names, the rest failed, the last k running."""
    rng = random.Random(0)
    if step == 0:
        return one_request_history(stub, experiment, size, rng)
    metric_names = [experiment.spec.objective.objective_metric_name,
                    *experiment.spec.objective.additional_metric_names]
    trials: list[pb.Trial] = []
    while len(trials) < size:
        count = min(step, size - len(trials))
        reply = stub.GetSuggestions(pb.GetSuggestionsRequest(
            experiment=experiment, trials=trials, current_request_number=count,
            total_request_number=len(trials) + count), timeout=60)
        for trial in trials[-count:]:
            trial.status.condition = rng.choice([pb.TrialStatus.SUCCEEDED] * 8 + [pb.TrialStatus.FAILED])
            if trial.status.condition == pb.TrialStatus.SUCCEEDED:
                values = [rng.uniform(0.7, 0.92)] + [rng.uniform(1, 9) for _ in metric_names[1:]]
                for name, value in zip(metric_names, values):
                    trial.status.observation.metrics.add(name=name, value=f"{value:.4f}")
        for entry in reply.parameter_assignments:
            # named as the reply asks (or as Katib names one), without the reply's labels, as Katib sends a trial
            trial = pb.Trial(name=entry.trial_name or f"{experiment.name}-{len(trials):05d}")
            trial.spec.parameter_assignments.assignments.extend(entry.assignments)
            trial.status.condition = pb.TrialStatus.RUNNING
            trials.append(trial)
    return trials


def one_request_history(stub: pb_grpc.SuggestionStub, experiment: pb.Experiment, size: int,
                        rng: random.Random) -> list[pb.Trial]:
    reply = stub.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment, current_request_number=size,
                                                         total_request_number=size), timeout=60)
    conditions = [pb.TrialStatus.SUCCEEDED] * 8 + [pb.TrialStatus.FAILED, pb.TrialStatus.RUNNING]
    trials = []
    for index, entry in enumerate(reply.parameter_assignments):
        trial = pb.Trial(name=f"{experiment.name}-{index:05d}")
        trial.spec.parameter_assignments.assignments.extend(entry.assignments)
        trial.status.condition = rng.choice(conditions)
        if trial.status.condition == pb.TrialStatus.SUCCEEDED:
            for name, value in [("Validation-Accuracy", rng.uniform(0.7, 0.92)), ("latency-ms", rng.uniform(1, 9))]:
                trial.status.observation.metrics.add(name=name, value=f"{value:.4f}")
        trials.append(trial)
    return trials


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--example", type=Path, default=EXAMPLE, help="the Experiment whose algorithm is timed")
    parser.add_argument("--history-step", type=int, default=0,
                        help="build the history k trials per request, each from the history so far (0: in one "
                             "request, as for nas-random, whose proposals do not depend on it)")
    args = parser.parse_args()

    process, address = start_server()
    try:
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=30)
        stub, health = pb_grpc.SuggestionStub(channel), health_pb2_grpc.HealthStub(channel)
        server = psutil.Process(process.pid)
        rss_start = server.memory_info().rss
        experiment = experiment_message(pb, experiment_from_document(yaml.safe_load(args.example.read_text())))
        trials = build_history(stub, experiment, args.history, args.history_step)
        request = pb.GetSuggestionsRequest(experiment=experiment, trials=trials, current_request_number=1,
                                           total_request_number=len(trials) + 1)
        suggest, ping = [], []
        rss_half = 0
        for call in range(args.calls):
            if call == args.calls // 2:
                rss_half = server.memory_info().rss
            start = time.perf_counter()
            reply = stub.GetSuggestions(request, timeout=60)
            suggest.append(time.perf_counter() - start)
            assert len(reply.parameter_assignments) == 1
            start = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(service="manager.v1beta1.Suggestion"), timeout=10)
            ping.append(time.perf_counter() - start)
        rss_end = server.memory_info().rss
        result = {
            "example": args.example.name,
            "history_trials": len(trials),
            "request_bytes": request.ByteSize(),
            "calls": args.calls,
            "get_suggestions_p50_ms": round(percentile_ms(suggest, 50), 2),
            "get_suggestions_p99_ms": round(percentile_ms(suggest, 99), 2),
            "health_check_p50_ms": round(percentile_ms(ping, 50), 2),
            "health_check_p99_ms": round(percentile_ms(ping, 99), 2),
            "p99_ratio_to_health_check": round(percentile_ms(suggest, 99) / percentile_ms(ping, 99), 1),
            "server_rss_start_mib": round(rss_start / 2**20, 1),
            "server_rss_after_half_the_calls_mib": round(rss_half / 2**20, 1),
            "server_rss_after_calls_mib": round(rss_end / 2**20, 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
