"""`katib-nas register`: add katib-nas's algorithms to a running Katib's katib-config, and nothing else.

Imports nothing heavy here: the kubernetes client is loaded by the handler.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from katib_nas.contract.algorithm_names import in_prose

if TYPE_CHECKING:
    from katib_nas.deploy.cluster import ConfigMapRef
    from katib_nas.deploy.katib_config import Change

DESCRIPTION = f"""\
Read Katib's katib-config ConfigMap, add (or update) one runtime.suggestions entry for each of {in_prose()},
all served by the katib-nas suggestion image, and write it back. Every other part of the configuration stays
as it is. Running it again changes nothing; --unregister removes exactly these entries. Katib reads the
ConfigMap for every new Experiment: no restart is needed. With --component DIR, write the kustomize component
that adds the same entries (manifests/katib-config is one) instead, for a Katib built with kustomize.

With --trial-resources, also list the distributed examples' trial kinds (TrainJob, PyTorchJob) in
init.controller.trialResources where they are missing; Katib's controller reads that list when it starts, so
restart it afterwards. With --component, the component lists them (and Katib's default, Job) where missing.
--unregister leaves that list as it is."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.deploy.images import SUGGESTION_IMAGE
    from katib_nas.deploy.katib_config import CONFIGMAP, KATIB_NAMESPACE

    parser = subparsers.add_parser("register", help="register the algorithms in a running Katib's katib-config",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", default=KATIB_NAMESPACE, help=f"Katib's namespace (default {KATIB_NAMESPACE})")
    parser.add_argument("--configmap", default=CONFIGMAP, help=f"Katib's ConfigMap (default {CONFIGMAP})")
    parser.add_argument("--image", default=SUGGESTION_IMAGE,
                        help=f"suggestion image the entries name (default {SUGGESTION_IMAGE})")
    parser.add_argument("--unregister", action="store_true", help="remove the katib-nas entries instead")
    parser.add_argument("--component", metavar="DIR", type=Path,
                        help="write a kustomize component with the entries into DIR (kustomization.yaml, "
                             "suggestions.yaml) instead of changing a cluster")
    parser.add_argument("--trial-resources", action="store_true",
                        help="also list TrainJob and PyTorchJob in init.controller.trialResources where missing "
                             "(then restart katib-controller)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resulting katib-config.yaml and change nothing")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default the current one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.contract.errors import InvalidInput
    from katib_nas.deploy.images import IMAGE_PATTERN

    if not IMAGE_PATTERN.fullmatch(args.image):
        raise InvalidInput(f"--image {args.image[:120]!r} is not an image reference: REGISTRY/PATH[:TAG][@sha256:DIGEST], "
                           "e.g. registry.example.com/katib-nas/suggestion:0.1.0")

    if args.trial_resources and args.unregister:
        raise InvalidInput("--trial-resources adds trial kinds: not with --unregister")
    if args.component is not None:
        return write_component(args.component, args.image, args.trial_resources)
    from katib_nas.deploy import cluster
    from katib_nas.deploy.katib_config import ALGORITHMS, suggestion_entries, unregister, with_trial_kinds
    from katib_nas.deploy.katib_config import register as with_entries

    ref = cluster.ConfigMapRef(args.namespace, args.configmap)
    entries = suggestion_entries(args.image)

    def edit(text: str) -> Change:
        if args.unregister:
            return unregister(text, ALGORITHMS)
        change = with_entries(text, entries)
        if not args.trial_resources:
            return change
        listed = with_trial_kinds(change.text)
        return dataclasses.replace(change, text=listed.text, listed_kinds=listed.listed_kinds)

    try:
        api = cluster.core_api(args.kubeconfig, args.context)
        if args.dry_run:
            change = edit(cluster.read_text(api, ref))
            sys.stdout.write(change.text)
            print(f"dry run: {describe(change, ref)}; nothing was written", file=sys.stderr)
            return 0
        change = cluster.update_text(api, ref, edit)
    except cluster.ClusterError as err:
        print(f"katib-nas register: error: {err}", file=sys.stderr)
        return 1
    print(describe(change, ref))
    return 0


def describe(change: Change, ref: ConfigMapRef) -> str:
    if not change.changed:
        return f"{ref} already as asked; nothing to change"
    parts = [f"{verb} {', '.join(names)}" for verb, names in
             (("added", change.added), ("updated", change.updated), ("removed", change.removed)) if names]
    if change.listed_kinds:
        parts.append(f"listed {', '.join(change.listed_kinds)} in init.controller.trialResources (Katib watches "
                     f"them after: kubectl -n {ref.namespace} rollout restart deployment katib-controller)")
    return f"{ref}: {'; '.join(parts)}"


def write_component(directory: Path, image: str, trial_kinds: bool = False) -> int:
    """The kustomize component for `image` (and, with `trial_kinds`, the trial kinds) written into `directory`
    (created when missing)."""
    from katib_nas.deploy.katib_config import component_files, foreign_component_files

    try:
        foreign = foreign_component_files(directory)
        if foreign:
            print(f"katib-nas register: error: {directory} holds {' and '.join(foreign)} that `katib-nas register "
                  "--component` did not write (your kustomization?); they are left as they are: give the "
                  "component a folder of its own", file=sys.stderr)
            return 1
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in component_files(image, trial_kinds).items():
            (directory / name).write_text(text)
    except OSError as err:
        print(f"katib-nas register: error: cannot write the component into {directory}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    kinds = " and the trial kinds in init.controller.trialResources (restart katib-controller after applying)"
    print(f"wrote {directory}/kustomization.yaml and suggestions.yaml for {image}{kinds if trial_kinds else ''}",
          file=sys.stderr)
    return 0
