"""The trial's push path: kubeflow.katib.report_metrics delivering our metrics to a DBManager over loopback."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
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
    push_to_katib({"Validation-Accuracy": 0.9123456, "params": 8058, "mparams": 0.008058, "latency-ms": 1.5,
                   "Branch-Stats": format_branch_stats([[0.5, 0.25]])}, address=address, timeout=10)
    [request] = recorder.requests
    assert request.trial_name == "envelopenet-trial-7"
    reported = {log.metric.name: log.metric.value for log in request.observation_log.metric_logs}
    assert reported == {"Validation-Accuracy": "0.912346", "mparams": "0.008058", "latency-ms": "1.5"}
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


def pushed(recorder: RecordingDBManager) -> list[dict[str, str]]:
    return [{log.metric.name: log.metric.value for log in request.observation_log.metric_logs}
            for request in recorder.requests]


def test_a_trial_pushes_every_epoch_and_its_final_metrics(db_manager: tuple[RecordingDBManager, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Push collector Katib sees what the StdOut collector would: each epoch, then the final report."""
    import io

    from katib_nas.trial_image.trial import TrialOptions, run_trial

    recorder, address = db_manager
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    stdout = io.StringIO()
    options = TrialOptions(architecture="in8x8x1-cls10-stem8/w8:c3/w16s2:c3", dataset="digits", epochs=3,
                           threads=1, max_train_samples=300, batch_size=64, report_to_katib=True)
    assert run_trial(options, stdout) == 0
    reports = pushed(recorder)
    assert len(reports) == 4  # three epochs, then the final report
    assert [sorted(r) for r in reports[:3]] == [sorted(["Validation-Accuracy", "Validation-Loss", "Train-Loss",
                                                        "Train-Accuracy"])] * 2 + [["Train-Accuracy", "Train-Loss"]]
    printed = dict(line.split(" ", 1)[1].split("=", 1) for line in stdout.getvalue().splitlines()[-10:])
    assert reports[-1]["Validation-Accuracy"] == printed["Validation-Accuracy"]
    assert {"mparams", "gflops", "latency-ms"} <= set(reports[-1])
    assert not {"params", "flops"} & set(reports[-1])  # raw counts would flatten the Katib UI's one-axis plot


def test_a_resumed_trial_does_not_push_its_restored_epochs_again(db_manager: tuple[RecordingDBManager, str],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """Katib's database kept them from the first start; the metrics file and stdout get them again."""
    import io

    from katib_nas.trial_image.trial import TrialOptions, run_trial

    recorder, address = db_manager
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    options = TrialOptions(architecture="in8x8x1-cls10-stem8/w8:c3/w16s2:c3", dataset="digits", epochs=2,
                           threads=1, max_train_samples=300, batch_size=64, report_to_katib=True,
                           checkpoint_dir=str(tmp_path))
    assert run_trial(options, io.StringIO()) == 0
    assert len(pushed(recorder)) == 3  # two epochs, then the final report
    again = io.StringIO()
    assert run_trial(options, again) == 0  # the checkpoint's run has finished: the final report only is new
    assert len(pushed(recorder)) == 4 and again.getvalue().count("Train-Accuracy=") == 3


def test_a_one_shot_search_pushes_every_epoch(db_manager: tuple[RecordingDBManager, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from katib_nas.trial_image.proxyless.search_trial import SearchOptions, run_proxyless_search

    recorder, address = db_manager
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    options = SearchOptions(supernet="in8x8x1-cls10-stem8/w8:mb3e3_c3_zero@r/w16s2:mb3e3_c3_zero@r",
                            search="epochs-3_warmup-1", dataset="digits", max_train_samples=300, batch_size=64,
                            threads=1, report_to_katib=True)
    assert run_proxyless_search(options, io.StringIO()) == 0
    reports = pushed(recorder)
    assert [list(r) for r in reports[:3]] == [["Train-Loss"]] * 3
    assert "Best-Architecture" not in reports[-1]  # a string: Katib's report_metrics takes numbers only
    assert {"Validation-Accuracy", "Validation-Loss", "latency-ms"} <= set(reports[-1])


def test_a_failed_push_during_training_ends_the_trial_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from katib_nas.contract.exit_codes import EXIT_FAILED
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    monkeypatch.setattr(katib_utils, "get_current_k8s_namespace", lambda: "kubeflow")
    monkeypatch.setenv("KATIB_TRIAL_NAME", "trial-1")
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setattr("katib_nas.trial_image.reporting.PUSH_TIMEOUT", 2)
    options = TrialOptions(architecture="in8x8x1-cls10-stem8/w8:c3", dataset="digits", epochs=2, threads=1,
                           max_train_samples=200, report_to_katib=True)
    assert run_trial(options, io.StringIO()) == EXIT_FAILED
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("katib-nas trial: error: cannot push metrics to Katib at 127.0.0.1:")


def test_the_push_example_trial_pushes_every_epoch(db_manager: tuple[RecordingDBManager, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The Push example's own trial command, rendered as Katib renders it, with a smaller budget."""
    import io

    from katib_nas.cli.main import build_parser
    from katib_nas.pipelines.search_request import experiment_info
    from katib_nas.runner.manifest import experiment_from_document
    from katib_nas.suggestion.core.algorithms import get_algorithm
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    from ..conftest import REPO, load_yaml
    from ..support.trial_template import rendered_command

    recorder, address = db_manager
    monkeypatch.setenv("KATIB_DB_MANAGER_ADDRESS", address)
    document = load_yaml(REPO / "examples" / "nas-random-push-fashion-mnist.yaml")
    assert document["spec"]["metricsCollectorSpec"]["collector"]["kind"] == "Push"
    spec = experiment_from_document(document)
    info = experiment_info(spec)
    get_algorithm(spec.algorithm).validate(info)
    assignments = get_algorithm(spec.algorithm).suggest(info, [], 1, 0).assignments[0]
    _, argv = rendered_command(document, assignments, "nas-random-push-trial")
    args = build_parser().parse_args(argv[1:] + ["--epochs=2", "--max-train-samples=256", "--threads=1"])
    assert args.report_to_katib
    options = TrialOptions(architecture=args.architecture, dataset=args.dataset, epochs=args.epochs,
                           threads=args.threads, max_train_samples=args.max_train_samples,
                           batch_size=args.batch_size, report_to_katib=args.report_to_katib)
    assert run_trial(options, io.StringIO()) == 0
    reports = pushed(recorder)
    assert len(reports) == 3  # two epochs and the final report
    wanted = {spec.objective.metric, *spec.objective.additional}
    assert wanted <= set(reports[-1])  # every metric the Experiment names reaches Katib
    assert "Validation-Accuracy" in reports[0]
