"""`katib-nas demo`: the embedded default experiment, run locally from start to report.

The experiment ships inside the package (demo-experiment.yaml). When
Fashion-MNIST is not installed it switches to scikit-learn's digits and says so.
The experiment actually run is written into the workdir, so it can be read,
edited and rerun with `katib-nas run`.
"""

from __future__ import annotations

import copy
import importlib.resources
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from .store import StoreError

DIGITS_SHAPE = [8, 8, 1]
#: The demo's Experiment as written into its workdir, to read, edit and run again.
EXPERIMENT_FILE = "experiment.yaml"


def demo_document(fashion_mnist_available: bool) -> dict[str, Any]:
    """The demo Experiment, switched to digits when Fashion-MNIST is missing."""
    text = importlib.resources.files(__package__).joinpath("demo-experiment.yaml").read_text()
    document = yaml.safe_load(text)
    if fashion_mnist_available:
        return document
    document = copy.deepcopy(document)
    document["metadata"]["name"] = "demo-envelopenet-digits"
    document["spec"]["nasConfig"]["graphConfig"]["inputSizes"] = DIGITS_SHAPE
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [arg.replace("--dataset=fashion-mnist", "--dataset=digits") for arg in container["command"]]
    return document


def is_demo_document(document: Any) -> bool:
    """Whether an Experiment document is the demo's (either dataset), as `write_demo_experiment` writes it."""
    return document in (demo_document(True), demo_document(False))


def write_demo_experiment(workdir: Path, fashion_mnist_available: bool, stream: TextIO | None = None) -> Path:
    """Write the demo Experiment into the workdir and return its path."""
    if not fashion_mnist_available:
        print("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); the demo uses "
              "scikit-learn's digits instead", file=stream or sys.stderr)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot use {workdir} as the workdir: {err.strerror or err}") from None
    path = workdir / EXPERIMENT_FILE
    path.write_text(yaml.safe_dump(demo_document(fashion_mnist_available), sort_keys=False))
    return path
