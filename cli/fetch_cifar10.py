"""`katib-nas fetch-cifar10`: put CIFAR-10's binary batches where the CIFAR-10 examples' trials read them."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Download CIFAR-10's binary archive (or copy it from --source, a mirror URL or a local file), check its MD5 sum,
and unpack its seven files into DEST/cifar-10-batches-bin, where `katib-nas trial --dataset cifar10
--data-dir DEST/cifar-10-batches-bin` reads them. A folder that already holds them is left alone. In a cluster,
examples/prepare/cifar10-data.yaml runs this in a Job onto the PersistentVolumeClaim cifar10-data."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.trial_image.fetch_cifar10 import CIFAR10_MD5, CIFAR10_URL

    parser = subparsers.add_parser("fetch-cifar10", help="put CIFAR-10's binary batches into a folder",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, required=True, help="folder to unpack into (e.g. the mounted volume)")
    parser.add_argument("--source", default=CIFAR10_URL, help=f"archive URL or file (default {CIFAR10_URL})")
    parser.add_argument("--md5", default=CIFAR10_MD5, help="the archive's MD5 sum (default the published one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.trial_image.fetch_cifar10 import fetch_cifar10

    folder = fetch_cifar10(args.dest, args.source, args.md5)
    print(f"CIFAR-10 binary batches in {folder}")
    return 0
