"""Start one trial as N local processes the way torchrun's agent does, for multi-process trial specs.

`python -m katib_nas.runner.launch --nnodes M --nproc-per-node P -- PROGRAM ARGS...` starts M x P copies
of the program on this machine with torch.distributed's environment (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, GROUP_RANK, ROLE_RANK, ROLE_WORLD_SIZE and the rendezvous MASTER_ADDR:MASTER_PORT on
loopback), sets OMP_NUM_THREADS to the CPUs divided among them when it is not set, and waits. When one
process fails, the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher
exits with the failed process's code after one line naming it, so a dead worker fails the trial instead
of leaving the others waiting. Every process shares the launcher's stdout and stderr (the trial's log).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from .trial_processes import STOP_GRACE, dying_with_parent

#: Processes one local trial may start.
MAX_LOCAL_PROCESSES = 64
POLL_SECONDS = 0.1
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class World:
    """M nodes of P processes each, all on this machine."""

    nodes: int
    per_node: int

    @property
    def size(self) -> int:
        return self.nodes * self.per_node


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on now (the rendezvous of rank 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def rank_environment(world: World, rank: int, port: int, base: Mapping[str, str]) -> dict[str, str]:
    """The environment torchrun gives process `rank`, plus a share of the CPUs as OMP_NUM_THREADS."""
    env = dict(base)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank % world.per_node), WORLD_SIZE=str(world.size),
               LOCAL_WORLD_SIZE=str(world.per_node), GROUP_RANK=str(rank // world.per_node),
               ROLE_RANK=str(rank), ROLE_WORLD_SIZE=str(world.size), MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port),
               PYTHONUNBUFFERED="1")
    if not env.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // world.size))
    return env


def launch(world: World, argv: Sequence[str], grace: float = STOP_GRACE) -> int:
    """Run `argv` as world.size processes; the exit code of the first that failed, else 0."""
    port = free_port()
    processes = [subprocess.Popen(dying_with_parent(argv), env=rank_environment(world, rank, port, os.environ),
                                  stdin=subprocess.DEVNULL) for rank in range(world.size)]
    previous = {signum: signal.signal(signum, lambda s, f: _stop(processes, grace, s))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _supervise(processes, grace)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(processes: list[subprocess.Popen], grace: float) -> int:
    while True:
        codes = [p.poll() for p in processes]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            rank, code = failed[0]
            others = [p for p in processes if p.poll() is None]
            _stop(others, grace)
            print(f"katib-nas launch: rank {rank} of {len(processes)} {_ended(code)}; stopped the "
                  f"{len(others)} other running process(es)", file=sys.stderr, flush=True)
            return code if code > 0 else 128 - code
        if all(code == 0 for code in codes):
            return 0
        time.sleep(POLL_SECONDS)


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _stop(processes: Sequence[subprocess.Popen], grace: float, signum: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m katib_nas.runner.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--nnodes", type=int, default=1, help="nodes emulated on this machine (default 1)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="processes per node (default 1)")
    parser.add_argument("program", nargs=argparse.REMAINDER, help="-- then the program and its arguments")
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    world = World(args.nnodes, args.nproc_per_node)
    if not program or not 1 <= world.size <= MAX_LOCAL_PROCESSES or min(world.nodes, world.per_node) < 1:
        parser.error(f"need a program and 1 to {MAX_LOCAL_PROCESSES} processes in all")
    return launch(world, program)


if __name__ == "__main__":
    sys.exit(main())
