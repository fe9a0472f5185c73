"""The project's Katib stubs and kubeflow-katib's (Katib's Python SDK) import into one process, in either order.

Both are generated from a file named api.proto declaring package api.v1.beta1; ours build their messages in a
descriptor pool of their own, so a notebook can import kubeflow.katib and katib_nas together. Each order runs
in a fresh interpreter (an import cannot be undone inside this one).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

OURS = "from katib_nas.proto import api_pb2 as ours, api_pb2_grpc; from katib_nas.runner import controller"
KATIB = "import kubeflow.katib; from kubeflow.katib import KatibClient, katib_api_pb2 as katib, katib_api_pb2_grpc"
#: After both imports: a message built with one set of stubs reads back with the other.
ROUND_TRIP = """
request = ours.GetSuggestionsRequest(current_request_number=3)
request.experiment.spec.algorithm.algorithm_name = "nas-random"
back = katib.GetSuggestionsRequest.FromString(request.SerializeToString())
assert back.current_request_number == 3 and back.experiment.spec.algorithm.algorithm_name == "nas-random"
reply = katib.GetSuggestionsReply()
reply.parameter_assignments.add().assignments.add(name="architecture", value="in8x8x1-cls10-stem8/w8:c3")
assert ours.GetSuggestionsReply.FromString(reply.SerializeToString()).parameter_assignments[0].assignments[0].value \\
    == "in8x8x1-cls10-stem8/w8:c3"
print("ok")
"""


@pytest.mark.parametrize("first, second", [(OURS, KATIB), (KATIB, OURS)], ids=["katib_nas-first", "kubeflow-first"])
def test_katib_nas_and_kubeflow_katib_import_together(first: str, second: str) -> None:
    done = subprocess.run([sys.executable, "-c", "\n".join([first, second, ROUND_TRIP])], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
