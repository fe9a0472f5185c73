"""The embedded demo experiment: Fashion-MNIST when installed, digits otherwise, written where it can be reused."""

from __future__ import annotations

from pathlib import Path

import yaml

from katib_nas.runner.demo import demo_document, write_demo_experiment
from katib_nas.runner.manifest import load_experiment
from katib_nas.suggestion.core.space import parse_nas_config


def command(document: dict) -> list[str]:
    return document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]


def test_demo_uses_fashion_mnist_when_installed(tmp_path: Path) -> None:
    path = write_demo_experiment(tmp_path, True)
    spec = load_experiment(path)
    assert spec.name == "demo-envelopenet-fashion-mnist"
    document = yaml.safe_load(path.read_text())
    assert "--dataset=fashion-mnist" in command(document)
    assert document["spec"]["algorithm"]["algorithmName"] == "envelopenet"


def test_demo_falls_back_to_digits_and_says_so(tmp_path: Path, capsys) -> None:
    path = write_demo_experiment(tmp_path, False)
    assert "uses scikit-learn's digits instead" in capsys.readouterr().err
    document = yaml.safe_load(path.read_text())
    assert "--dataset=digits" in command(document) and "--dataset=fashion-mnist" not in command(document)
    assert parse_nas_config(document["spec"]["nasConfig"]).input_shape == (8, 8, 1)
    assert load_experiment(path).name == "demo-envelopenet-digits"
    assert demo_document(True)["spec"]["nasConfig"]["graphConfig"]["inputSizes"] == [28, 28, 1]

