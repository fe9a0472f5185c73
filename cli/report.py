"""`katib-nas report`: the report of a local run, or of a Katib Experiment on a cluster (imports nothing heavy here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from katib_nas.contract.errors import InvalidInput

DESCRIPTION = """\
Write the report of an experiment: best architecture (text and JSON), trials CSV, plots, network diagram, a
Markdown summary and report.html, one self-contained page with every trial. Give a local run's workdir, or
--experiment NAME to read a Katib Experiment and its Trials from the cluster of your kubeconfig (the same
report). Per-epoch curves of a cluster Experiment come from Katib's DB manager (--db-manager)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write the report of a local run or of a Katib Experiment",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, nargs="?", help="a local run's workdir")
    parser.add_argument("--experiment", metavar="NAME", help="a Katib Experiment on the cluster instead")
    parser.add_argument("--namespace", metavar="NS",
                        help="the Experiment's namespace (default: the kubeconfig context's, else default)")
    parser.add_argument("--db-manager", metavar="HOST:PORT", default="",
                        help="Katib's DB manager, for per-epoch curves (katib-db-manager.kubeflow:6789 inside the "
                             "cluster; from outside: kubectl -n kubeflow port-forward svc/katib-db-manager 6789, "
                             "then localhost:6789)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default the current one)")
    parser.add_argument("--output", type=Path, default=None,
                        help="report folder (default WORKDIR/report, or NAME-report for --experiment)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if (args.workdir is None) == (args.experiment is None):
        raise InvalidInput("give either a local run's WORKDIR or --experiment NAME")
    if args.workdir is not None:
        from katib_nas.runner.report import write_report
        from katib_nas.runner.workdir_run import read_run

        path = write_report(args.workdir, args.output)
        local = read_run(args.workdir)
        if local is not None and local.interrupted:
            print(f"experiment {local.name} is interrupted; resume it with: {local.resume_command()}")
    else:
        path = cluster_report(args)
        if path is None:
            return 1
    print(f"report: {path} (open {path.with_name('report.html')})")
    return 0


def cluster_report(args: argparse.Namespace) -> Path | None:
    """The report of a cluster Experiment; None after printing why the cluster could not be read."""
    from katib_nas.deploy.cluster import ClusterError
    from katib_nas.pipelines.katib_experiment import default_namespace
    from katib_nas.pipelines.katib_results import ClusterExperiment, check_names, custom_objects_api, read_experiment
    from katib_nas.runner.report import write_report_files

    target = ClusterExperiment(args.experiment, args.namespace or default_namespace(kubeconfig=args.kubeconfig, context=args.context), args.db_manager)
    check_names(target)
    try:
        data = read_experiment(custom_objects_api(args.kubeconfig, args.context), target)
    except ClusterError as err:
        print(f"katib-nas report: error: {err}", file=sys.stderr)
        return None
    return write_report_files(data, args.output or Path(f"{target.name}-report"))
