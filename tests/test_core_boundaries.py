"""The core (space, spec, codec, algorithms) stays free of grpc, torch and kubernetes."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import katib_nas.suggestion.core as core

FORBIDDEN = ("grpc", "torch", "kubernetes", "kubeflow", "google.protobuf", "katib_nas.proto", "katib_nas.trial")


def test_core_modules_import_nothing_forbidden() -> None:
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, "katib_nas.suggestion.core.")]
    assert "katib_nas.suggestion.core.codec" in modules and "katib_nas.suggestion.core.algorithms.nas_random" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                       text=True).stdout)
    offenders = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offenders == []
