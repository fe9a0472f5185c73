"""`katib-nas pipeline compile|run`: build the Kubeflow pipeline for an example, or run it on this machine.

Imports nothing heavy here: kfp is loaded by the handlers.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from katib_nas.pipelines.pipeline import StepSettings

DEFAULT_EXAMPLE = "nas-random-fashion-mnist"
#: Where `katib-nas pipeline run` keeps its runs, one folder each.
LOCAL_PIPELINE_ROOT = Path("runs/pipeline")
CPU_QUANTITY = re.compile(r"([0-9]*[.])?[0-9]+m?")
MEMORY_QUANTITY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="compile or run the Kubeflow pipeline (search, train, export)",
                                   description="The Kubeflow Pipelines v2 pipeline nas_search -> train_final -> "
                                               "export_model for one example Experiment.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    compile_parser = actions.add_parser("compile", help="write the pipeline YAML to upload to Kubeflow Pipelines")
    compile_parser.add_argument("--example", default=DEFAULT_EXAMPLE,
                                help=f"example name under examples/ or a YAML path (default {DEFAULT_EXAMPLE})")
    compile_parser.add_argument("--image", default=None,
                                help="image the steps run in (default the example's trial image); needs katib_nas "
                                     "and kfp installed")
    compile_parser.add_argument("--cpu", default=None, help="final training CPU limit (default the example trial's)")
    compile_parser.add_argument("--memory", default=None,
                                help="final training memory limit, e.g. 8Gi (default the example trial's)")
    compile_parser.add_argument("--accelerator", default=None, metavar="RESOURCE=COUNT",
                                help="final training accelerator, e.g. nvidia.com/gpu=1; 'none' for none "
                                     "(default the example trial's)")
    compile_parser.add_argument("--data-pvc", action="append", default=None, metavar="CLAIM:PATH",
                                help="PersistentVolumeClaim the steps mount at PATH (repeatable; default the "
                                     "example trial's claims)")
    compile_parser.add_argument("--trainjob-pvc", default=None, metavar="CLAIM:PATH",
                                help="PersistentVolumeClaim (ReadWriteMany for several nodes) where the final "
                                     "training keeps its checkpoint and model when it runs as a TrainJob "
                                     "(final_backend=trainjob); mounted at PATH in the step and the TrainJob")
    compile_parser.add_argument("--output", type=Path, required=True, help="pipeline YAML to write")
    compile_parser.set_defaults(handler=compile_command)

    run_parser = actions.add_parser("run", help="run the whole pipeline here with kfp.local (no cluster)")
    run_parser.add_argument("--example", default=DEFAULT_EXAMPLE,
                            help=f"example name under examples/ or a YAML path (default {DEFAULT_EXAMPLE})")
    run_parser.add_argument("--pipeline-root", type=Path, default=LOCAL_PIPELINE_ROOT,
                            help=f"where kfp.local writes the artifacts, a folder per run "
                                 f"(default {LOCAL_PIPELINE_ROOT})")
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
    from katib_nas.contract.errors import InvalidInput
    from katib_nas.pipelines.pipeline import compile_pipeline

    if args.output.suffix not in (".yaml", ".yml") or args.output.is_dir():
        raise InvalidInput(f"--output {args.output} must name a .yaml file for the pipeline")
    path = compile_pipeline(args.output, args.example, step_settings(args))
    print(f"pipeline: {path}")
    return 0


def step_settings(args: argparse.Namespace) -> "StepSettings":
    """The compile flags as StepSettings; flags not given keep the example's values."""
    from katib_nas.pipelines.pipeline import DataVolume, StepResources, StepSettings, load_example, trial_resources

    resources = None
    check_quantities(args.cpu, args.memory)
    if args.cpu or args.memory or args.accelerator:
        example = trial_resources(load_example(args.example))
        name, count = parse_accelerator(args.accelerator) if args.accelerator else (example.accelerator,
                                                                                     example.accelerator_count)
        resources = StepResources(args.cpu or example.cpu, args.memory or example.memory, name, count)
    volumes = None if args.data_pvc is None else tuple(DataVolume(*parse_claim(text)) for text in args.data_pvc)
    work = DataVolume(*parse_claim(args.trainjob_pvc, "--trainjob-pvc")) if args.trainjob_pvc else None
    return StepSettings(args.image, resources, volumes, work)


def check_quantities(cpu: str | None, memory: str | None) -> None:
    """--cpu and --memory in the forms Kubeflow Pipelines takes for a step's limits."""
    from katib_nas.contract.errors import InvalidInput

    if cpu is not None and not CPU_QUANTITY.fullmatch(cpu):
        raise InvalidInput(f"--cpu {cpu!r} is not a CPU quantity: cores, e.g. 2 or 0.5, or whole millicores, "
                           "e.g. 500m")
    if memory is not None and not MEMORY_QUANTITY.fullmatch(memory):
        raise InvalidInput(f"--memory {memory!r} is not a memory quantity: whole bytes with an optional suffix "
                           "K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, e.g. 8Gi")


def parse_accelerator(text: str) -> tuple[str, int]:
    """`nvidia.com/gpu=1` -> ("nvidia.com/gpu", 1); `none` -> ("", 0)."""
    from katib_nas.contract.errors import InvalidInput

    if text == "none":
        return "", 0
    name, sep, count = text.partition("=")
    if not sep or not name or not count.isdigit() or int(count) < 1:
        raise InvalidInput(f"--accelerator {text!r} must be RESOURCE=COUNT, e.g. nvidia.com/gpu=1, or none")
    return name, int(count)


def parse_claim(text: str, flag: str = "--data-pvc") -> tuple[str, str]:
    """`cifar10-data:/data` -> ("cifar10-data", "/data")."""
    from katib_nas.contract.errors import InvalidInput

    claim, sep, path = text.partition(":")
    if not sep or not claim or not path.startswith("/"):
        raise InvalidInput(f"{flag} {text!r} must be CLAIM:/absolute/path, e.g. cifar10-data:/data")
    return claim, path


def run_command(args: argparse.Namespace) -> int:
    from katib_nas.pipelines.pipeline import run_local

    files = run_local(parse_arguments(args.arguments), args.pipeline_root, args.example)
    print(f"pipeline finished; every step's outputs under {files.folder}\n"
          f"  TorchScript model: {files.torchscript}\n"
          f"  ONNX model:        {files.onnx}\n"
          f"  model.json (architecture, input normalisation, metrics): {files.model / 'model.json'}")
    return 0
