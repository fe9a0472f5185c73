"""`katib-nas pipeline compile|run`: build the Kubeflow pipeline for an example, or run it on this machine.

Imports nothing heavy here: kfp is loaded by the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_EXAMPLE = "nas-random-fashion-mnist"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="compile or run the Kubeflow pipeline (search, train, export)",
                                   description="The Kubeflow Pipelines v2 pipeline nas_search -> train_final -> "
                                               "export_model for one example Experiment.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    compile_parser = actions.add_parser("compile", help="write the pipeline YAML to upload to Kubeflow Pipelines")
    compile_parser.add_argument("--example", default=DEFAULT_EXAMPLE,
                                help=f"example name under examples/ or a YAML path (default {DEFAULT_EXAMPLE})")
    compile_parser.add_argument("--image", default=None,
                                help="image the steps run in (default the trial image); needs katib_nas installed")
    compile_parser.add_argument("--output", type=Path, required=True, help="pipeline YAML to write")
    compile_parser.set_defaults(handler=compile_command)

    run_parser = actions.add_parser("run", help="run the whole pipeline here with kfp.local (no cluster)")
    run_parser.add_argument("--example", default=DEFAULT_EXAMPLE,
                            help=f"example name under examples/ or a YAML path (default {DEFAULT_EXAMPLE})")
    run_parser.add_argument("--pipeline-root", type=Path, default=Path("runs/pipeline"),
                            help="where kfp.local writes the artifacts (default runs/pipeline)")
    run_parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", dest="arguments",
                            help="pipeline parameter, e.g. --arg max_trials=4 --arg trial_args='--epochs=1' "
                                 "(repeatable; backend defaults to local)")
    run_parser.set_defaults(handler=run_command)


def parse_arguments(pairs: list[str]) -> dict[str, str | int | bool]:
    """NAME=VALUE pairs; whole numbers become ints and true/false become bools (the pipeline's typed
    parameters)."""
    from katib_nas.contract.errors import InvalidInput

    arguments: dict[str, str | int | bool] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--arg {pair!r} must be NAME=VALUE")
        arguments[name] = typed_value(value)
    return arguments


def typed_value(value: str) -> str | int | bool:
    """`3` -> 3, `true`/`false` (any case) -> True/False, anything else stays text."""
    if value.lstrip("-").isdigit():
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def compile_command(args: argparse.Namespace) -> int:
    from katib_nas.pipelines.pipeline import compile_pipeline

    path = compile_pipeline(args.output, args.example, args.image)
    print(f"pipeline: {path}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from katib_nas.pipelines.pipeline import run_local

    run_local(parse_arguments(args.arguments), args.example, args.pipeline_root)
    print(f"pipeline finished; artifacts under {args.pipeline_root}")
    return 0
