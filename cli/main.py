"""The `katib-nas` command: one entry point, one subcommand per adapter.

Each subcommand module exposes `register(subparsers)`; its handler imports
heavy dependencies (torch, matplotlib, kfp) only when it runs, so `katib-nas
serve` starts without them. A handler raises InvalidInput for bad input: the
user sees one line and exit code 2. A write that fails for want of space is
one line and exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Mapping

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED

from . import example, fetch_cifar10, pipeline, profile, proxyless_search, register, report, run, serve, trial

SUBCOMMANDS = (serve, trial, run, report, example, pipeline, proxyless_search, profile, fetch_cifar10, register)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (plus where to find help)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="katib-nas", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.register(subparsers)
    return parser


def secondary_rank(environ: Mapping[str, str]) -> bool:
    """True in a process of a data-parallel run other than rank 0: every process checks the same input, so
    rank 0's line is the run's one line about it (the others exit with the same code)."""
    rank, world = environ.get("RANK", "").strip(), environ.get("WORLD_SIZE", "").strip()
    return rank.isascii() and rank.isdigit() and world.isascii() and world.isdigit() and len(rank) < 10 \
        and len(world) < 10 and int(world) > 1 and 0 < int(rank) < int(world)


#: Subcommands that train: their processes start again with glibc's malloc tuned (trial_image/allocator.py).
TRAINING = ("trial", "proxyless-search")


def entry() -> None:
    """The `katib-nas` program (console script and `python -m katib_nas.cli`): a training subcommand first
    restarts the process with the malloc settings it trains best with, then every subcommand runs."""
    if sys.argv[1:2] and sys.argv[1] in TRAINING:
        from katib_nas.trial_image.allocator import tuned_environment

        environ = tuned_environment(os.environ)
        if environ is not None:
            os.execve(sys.executable, sys.orig_argv, environ)
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InvalidInput as err:
        if not secondary_rank(os.environ):
            print(f"katib-nas {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"katib-nas {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"katib-nas {args.command}: error: no space left on device writing {_written(err)}", file=sys.stderr)
        return EXIT_FAILED


def _written(err: OSError) -> str:
    """The file a failed write was for. Standard output is pointed at /dev/null when it cannot take more, so that
    data still buffered there does not fail again, with a traceback, when the interpreter exits."""
    try:
        sys.stdout.flush()
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return str(err.filename) if err.filename else "an output file"
