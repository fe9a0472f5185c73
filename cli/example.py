"""`katib-nas example`: write a shipped example for your registry and namespace, or list them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from katib_nas.contract.errors import InvalidInput

DESCRIPTION = """\
Print an example Experiment (or what an example needs made first, prepare/NAME) with the
images of your registry and your namespace, ready for `kubectl apply -f -`. The examples name
docker.io/katibnas/ROLE:VERSION, which `make push REGISTRY=...` builds and pushes under your registry, and
the namespace kubeflow. --list shows every example with its first line."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.deploy.examples import NAMESPACE
    from katib_nas.deploy.images import REGISTRY, VERSION

    parser = subparsers.add_parser("example", help="write an example for your registry and namespace",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="the example's name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the examples")
    parser.add_argument("--registry", default=REGISTRY, help=f"where your cluster pulls our images (default {REGISTRY})")
    parser.add_argument("--version", default=VERSION, help=f"the images' tag (default {VERSION})")
    parser.add_argument("--namespace", default=NAMESPACE, help=f"namespace of the objects (default {NAMESPACE})")
    parser.add_argument("--output", type=Path, default=None, help="write here instead of standard output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.deploy import examples

    if args.list and args.name:
        raise InvalidInput(f"--list lists every example and writes none: pass either {args.name[:80]!r} or --list")
    if args.list:
        known = examples.catalogue()
        width = max(len(name) for name in known)
        for name, path in known.items():
            print(f"{name:<{width}}  {examples.summary(path)}")
        return 0
    if not args.name:
        raise InvalidInput("name an example, or pass --list to see them")
    text = examples.render(examples.find(args.name), examples.Target(args.registry.rstrip("/"), args.namespace,
                                                                     args.version))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text)
    except OSError as err:
        raise InvalidInput(f"cannot write {args.output}: {err.strerror or err}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
