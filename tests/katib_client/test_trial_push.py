"""The trial's push path: kubeflow.katib.report_metrics delivering our metrics to a DBManager over loopback."""

from __future__ import annotations

from concurrent import futures
from typing import Iterator

import grpc
import pytest
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc
from kubeflow.katib.utils import utils as katib_utils

from katib_nas.contract.branch_stats import format_branch_stats
from katib_nas.trial_image.reporting import ReportError, push_to_katib

from .conftest import free_port


class RecordingDBManager(pb_grpc.DBManagerServicer):
    """Katib's DB manager, reduced to remembering what was reported."""

    def __init__(self) -> None:
        self.requests: list[pb.ReportObservationLogRequest] = []

    def ReportObservationLog(self, request: pb.ReportObservationLogRequest,
                             context: grpc.ServicerContext) -> pb.ReportObservationLogReply:
        self.requests.append(request)
        return pb.ReportObservationLogReply()


@pytest.fixture
def db_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingDBManager, str]]:
    # report_metrics reads the pod's namespace from the service account mount, which exists only in a pod.
    monkeypatch.setattr(katib_utils, "get_current_k8s_namespace", lambda: "kubeflow")
    monkeypatch.setenv("KATIB_TRIAL_NAME", "envelopenet-trial-7")
    recorder = RecordingDBManager()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_DBManagerServicer_to_server(recorder, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    yield recorder, address
    server.stop(grace=None)


def test_numeric_metrics_reach_katibs_db_manager(db_manager: tuple[RecordingDBManager, str]) -> None:
    recorder, address = db_manager
    push_to_katib({"Validation-Accuracy": 0.9123456, "params": 8058, "latency-ms": 1.5,
                   "Branch-Stats": format_branch_stats([[0.5, 0.25]])}, address=address, timeout=10)
    [request] = recorder.requests
    assert request.trial_name == "envelopenet-trial-7"
    reported = {log.metric.name: log.metric.value for log in request.observation_log.metric_logs}
    assert reported == {"Validation-Accuracy": "0.912346", "params": "8058", "latency-ms": "1.5"}
    assert all(log.time_stamp for log in request.observation_log.metric_logs)


def test_address_comes_from_the_environment(db_manager: tuple[RecordingDBManager, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, address = db_manager
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    push_to_katib({"Validation-Accuracy": 0.5}, timeout=10)
    assert len(recorder.requests) == 1


def test_an_unreachable_db_manager_is_one_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(katib_utils, "get_current_k8s_namespace", lambda: "kubeflow")
    monkeypatch.setenv("KATIB_TRIAL_NAME", "trial-1")
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ReportError, match=f"cannot push metrics to Katib at {address}") as caught:
        push_to_katib({"Validation-Accuracy": 0.5}, address=address, timeout=2)
    assert "\n" not in str(caught.value)
