"""Data-parallel trials: two real processes on loopback (gloo), started by torchrun or by hand.

- `katib-nas trial` and `katib-nas proxyless-search` run under torchrun unchanged; rank 0 alone prints the
  metric lines, and two processes at the same global batch reach one process's accuracy within TOLERANCE.
- Bad placement is one line and exit 2 before any training: several processes without a rendezvous, more
  processes than a batch can feed; a peer that never arrives or dies mid-run ends the others with one
  line and exit 1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from katib_nas.contract.errors import InvalidInput
from katib_nas.runner.launch import free_port
from katib_nas.trial_image.distributed import Placement, check_shares, placement_from

from .support.distributed_trial import errors_of, final, run, under_torchrun
from .support.trial_cli import Run, katib_nas

ARCH = "in8x8x1-cls10-stem8/w16:c3+s3/w24s2:c3@0"
SUPERNET = "in8x8x1-cls10-stem8/w8:mb3e3_mb5e6_c3_zero@r:mb3e3_mb5e6_c3_zero@r/w16s2:mb3e3_mb5e6_c3_zero@r"
#: Largest difference in final validation accuracy between 1 and 2 processes at the same global batch (digits,
#: 180 validation images: 0.05 is 9 images; the gradient sums differ only in floating-point order and BatchNorm
#: statistics are per process during training).
TOLERANCE = 0.05
TRAIN = ["--dataset", "digits", "--threads", "1", "--batch-size", "64", "--lr", "0.1", "--epochs", "3", "--seed", "2"]


# --- placement from the environment ------------------------------------------------------------------------

def test_one_process_needs_no_environment() -> None:
    assert placement_from({}) == Placement() and placement_from({"WORLD_SIZE": "1"}) == Placement()


@pytest.mark.parametrize("environ, message", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT are not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not set"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK is not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK='2' must be a whole number in [0, 1]"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "99999"}, "MASTER_PORT='99999'"),
])
def test_an_inconsistent_environment_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        placement_from(environ)


@pytest.mark.parametrize("environ", [{"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "1"},
                                     {"PET_NNODES": "1", "PET_NPROC_PER_NODE": "2"}])
def test_kubeflow_trainers_variables_without_torchrun_are_refused(environ: dict[str, str]) -> None:
    """Trainer's torch plugin sets only PET_*: without torchrun every node would train alone, as rank 0."""
    with pytest.raises(InvalidInput, match=r"announce several processes, but this one was not started by torchrun"):
        placement_from(environ)


def test_one_node_of_one_process_needs_no_torchrun() -> None:
    assert placement_from({"PET_NNODES": "1", "PET_NPROC_PER_NODE": "1"}) == Placement()
    assert placement_from({"PET_NNODES": "1", "PET_NPROC_PER_NODE": "auto"}) == Placement()


def test_each_process_must_get_two_images_of_a_batch() -> None:
    check_shares(Placement(0, 4, 0, "h:1"), 8, 1000)
    with pytest.raises(InvalidInput, match=r"--batch-size 8 .* each of 5 processes .* at least 10 or run at most 4"):
        check_shares(Placement(0, 5, 0, "h:1"), 8, 1000)


# --- two processes under torchrun ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_and_two() -> tuple[Run, Run]:
    one = run([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN, "--branch-stats"])
    two = under_torchrun("trial", "--architecture", ARCH, *TRAIN, "--branch-stats")
    return one, two


def test_two_processes_print_every_metric_line_once(one_and_two: tuple[Run, Run]) -> None:
    one, two = one_and_two
    assert two.code == 0, two.stderr[-2000:]
    names = lambda r: [m.split("=")[0] for m in re.findall(r" ([\w-]+=)\S+$", r.stdout, re.M)]  # noqa: E731
    assert names(two) == names(one)  # the same lines in the same order: rank 1 printed none
    assert len(re.findall(r"Branch-Stats=", two.stdout)) == 1 and two.stdout.count(" params=") == 1
    assert "rank 1 of 2" in two.stderr and "rank 0 of 2" in two.stderr


def test_two_processes_reach_one_process_accuracy_at_the_same_global_batch(one_and_two: tuple[Run, Run]) -> None:
    one, two = one_and_two
    assert one.code == 0 and two.code == 0
    assert final(one, "Validation-Accuracy") > 0.85
    assert abs(final(two, "Validation-Accuracy") - final(one, "Validation-Accuracy")) <= TOLERANCE
    assert final(two, "params") == final(one, "params")


def test_proxyless_search_runs_under_torchrun_and_reports_once() -> None:
    two = under_torchrun("proxyless-search", f"--architecture={SUPERNET}", "--search=epochs-2_warmup-1_target-1",
                         "--latency-table=measure", "--dataset=digits", "--threads=1", "--batch-size=64")
    assert two.code == 0, two.stderr[-2000:]
    assert len(re.findall(r"Best-Architecture=", two.stdout)) == 1
    assert len(re.findall(r"predicted-latency-ms=", two.stdout)) == 1


# --- bad placement and lost processes -----------------------------------------------------------------------

def rank_env(rank: int, world: int, port: int | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1", **extra)
    if port is not None:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def test_several_processes_without_a_rendezvous_exit_2_with_one_line() -> None:
    done = run([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN], env=rank_env(0, 2, None))
    assert done.code == 2
    assert errors_of(done) == ["katib-nas trial: error: WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT are not set: "
                               "no rendezvous to meet the other processes at; start the trial with torchrun (or a "
                               "PyTorchJob or TrainJob), or set MASTER_ADDR and MASTER_PORT"]


def test_the_other_ranks_leave_the_one_line_to_rank_0() -> None:
    done = run([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN], env=rank_env(1, 2, None))
    assert done.code == 2 and errors_of(done) == []


def test_more_processes_than_a_batch_can_feed_exit_2_before_training(tmp_path: Path) -> None:
    done = run([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path)],
               env=rank_env(0, 40, free_port()))
    assert done.code == 2
    assert errors_of(done) == ["katib-nas trial: error: --batch-size 64 (64 images a batch here) gives each of 40 "
                               "processes fewer than 2 images: raise --batch-size to at least 80 or run at most 32 "
                               "processes"]
    assert list(tmp_path.iterdir()) == []


def test_a_process_that_never_arrives_fails_the_others_after_the_timeout() -> None:
    done = run([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN, "--rendezvous-timeout", "2"],
               env=rank_env(0, 2, free_port()))
    assert done.code == 1
    [line] = errors_of(done)
    assert line.startswith("katib-nas trial: error: rank 0 of 2: the processes did not all meet at the rendezvous "
                           "127.0.0.1:")
    assert "Validation-Accuracy" not in done.stdout


def test_a_process_that_dies_mid_run_fails_the_other_with_one_line() -> None:
    port = free_port()
    argv = [*katib_nas(), "trial", "--architecture", ARCH, *TRAIN[:-4], "--epochs", "40"]
    ranks = [subprocess.Popen(argv, env=rank_env(r, 2, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, stdin=subprocess.DEVNULL) for r in range(2)]
    try:
        for line in ranks[0].stdout:  # type: ignore[union-attr]
            if "Train-Loss=" in line:  # rank 0 finished an epoch: both are training
                break
        ranks[1].send_signal(signal.SIGKILL)
        stdout, stderr = ranks[0].communicate(timeout=300)
    finally:
        for process in ranks:
            process.kill()
            process.wait()
    assert ranks[0].returncode == 1
    [line] = [line for line in stderr.splitlines() if line.startswith("katib-nas")]
    assert line.startswith("katib-nas trial: error: rank 0 of 2: another process of the run failed or stopped "
                           "answering")
    assert "params=" not in stdout
