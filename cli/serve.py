"""`katib-nas serve`: run the suggestion service.

It listens on 127.0.0.1 unless told otherwise: on a developer's machine the
service is for local clients. The suggestion image passes `--host 0.0.0.0`
(its Dockerfile CMD), which is what Katib's suggestion pod needs.
"""

from __future__ import annotations

import argparse
import logging
import socket

from katib_nas.contract.algorithm_names import in_prose
from katib_nas.contract.errors import InvalidInput
from katib_nas.suggestion.service.message_size import DEFAULT_MAX_MESSAGE_MB, MAX_MESSAGE_MB

from .arguments import bounded_float, bounded_int

DEFAULT_HOST = "127.0.0.1"
MAX_WORKERS = 256


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve Katib's Suggestion API for all katib-nas algorithms",
                                   description=f"Serve Katib's Suggestion gRPC API for {in_prose()}, and "
                                               "grpc.health.v1 Health.")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every interface, as in "
                             "the suggestion image)")
    parser.add_argument("--port", type=bounded_int(0, 65535), default=6789,
                        help="port to listen on (default 6789, Katib's; 0 picks a free one)")
    parser.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), default=1,
                        help="calls computed at once (default 1): the computation holds Python's GIL, so more "
                             "workers add little throughput and delay health checks; these are answered beside "
                             "the workers either way")
    parser.add_argument("--grace", type=bounded_float(0.0, 3600.0), default=30.0,
                        help="seconds in-flight calls get to finish after SIGTERM (default 30)")
    parser.add_argument("--max-message-mb", type=bounded_int(1, MAX_MESSAGE_MB),
                        default=DEFAULT_MAX_MESSAGE_MB, help="largest request accepted, in MiB: Katib sends every "
                                                             f"trial in each request (default {DEFAULT_MAX_MESSAGE_MB})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.suggestion.service.server import serve

    check_host(args.host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.host, args.port, args.workers, args.grace, args.max_message_mb)


def check_host(host: str) -> None:
    """--host must resolve, before gRPC tries it and logs a line of its own beside ours."""
    try:
        socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except OSError as err:
        raise InvalidInput(f"--host {host!r} does not resolve to an address: {err.strerror or err}") from None
