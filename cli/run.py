"""`katib-nas run` and `katib-nas demo`: the local runner's subcommands (imports nothing heavy here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from katib_nas.contract.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

from .arguments import non_negative_int, positive_int

if TYPE_CHECKING:
    from katib_nas.runner.local_run import RunOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    run_parser = subparsers.add_parser(
        "run", help="run a Katib Experiment YAML on this machine",
        description="Run a Katib Experiment locally: start the suggestion service, run each trial's container "
                    "command as a subprocess, collect metrics as Katib does, keep state under the workdir.")
    run_parser.add_argument("experiment", type=Path, help="Experiment YAML (the file you would kubectl apply)")
    run_parser.add_argument("--workdir", type=Path, default=None,
                            help="where state, trial logs and the report go (default runs/<experiment name>)")
    run_parser.add_argument("--max-trials", type=positive_int, default=None, help="override spec.maxTrialCount")
    run_parser.add_argument("--parallel", type=positive_int, default=None, help="override spec.parallelTrialCount")
    run_parser.add_argument("--max-failed", type=non_negative_int, default=None,
                            help="override spec.maxFailedTrialCount")
    run_parser.add_argument("--resume", action="store_true",
                            help="continue the run in --workdir (after Ctrl-C or a crash); finished trials are kept")
    run_parser.add_argument("--trial-arg", action="append", default=None, metavar="ARG", dest="trial_args",
                            help="argument for every trial command, written --trial-arg=--flag=value: replaces an "
                                 "existing --flag=... argument or is appended (repeatable)")
    run_parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run_parser.set_defaults(handler=run_command)

    demo_parser = subparsers.add_parser(
        "demo", help="run the embedded demo: a small EnvelopeNet search on Fashion-MNIST, locally",
        description="Run the embedded demo experiment (EnvelopeNet construction on Fashion-MNIST, digits when "
                    "Fashion-MNIST is not installed) with the local runner and write its report.")
    demo_parser.add_argument("--workdir", type=Path, default=Path("runs/demo"),
                             help="where state, trial logs and the report go (default runs/demo)")
    demo_parser.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    demo_parser.set_defaults(handler=demo_command)


def run_command(args: argparse.Namespace) -> int:
    from katib_nas.runner.local_run import RunOptions

    options = RunOptions(args.experiment, args.workdir, args.max_trials, args.parallel, args.max_failed,
                         args.resume, tuple(args.trial_args) if args.trial_args is not None else None,
                         report=not args.no_report)
    return execute(options)


def execute(options: "RunOptions", demo: bool = False) -> int:
    """Run an experiment (the demo's, when `demo`); a one-line message with the command that continues it and
    an exit code for interruption, a full disk and suggestion failures."""
    from katib_nas.runner.controller import Interrupted
    from katib_nas.runner.local_run import run
    from katib_nas.runner.store import DiskFull
    from katib_nas.runner.suggestion_process import SuggestionFailure
    from katib_nas.runner.workdir_run import resume_command

    try:
        result = run(options)
    except Interrupted as stopped:
        print(f"katib-nas run: interrupted; running trials were stopped and saved. Continue with: "
              f"{resume_command(stopped.workdir or options.workdir, options.experiment_path, demo)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except DiskFull as err:
        print(f"katib-nas run: error: {err}; running trials were stopped and will run again. Free space, then "
              f"continue with: {resume_command(err.workdir or options.workdir, options.experiment_path, demo)}",
              file=sys.stderr)
        return EXIT_FAILED
    except SuggestionFailure as err:
        print(f"katib-nas run: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result.outcome.condition == "Succeeded" else EXIT_FAILED


def demo_command(args: argparse.Namespace) -> int:
    from katib_nas.runner.demo import write_demo_experiment
    from katib_nas.runner.demo_workdir import prepare_demo_workdir
    from katib_nas.runner.local_run import RunOptions
    from katib_nas.trial_image.data import FASHION_MNIST_DIR, fashion_mnist_files

    prepare_demo_workdir(args.workdir, args.resume, sys.stderr)
    fashion = fashion_mnist_files(FASHION_MNIST_DIR)[0].is_file()
    experiment = write_demo_experiment(args.workdir, fashion)
    return execute(RunOptions(experiment, args.workdir, resume=args.resume), demo=True)

