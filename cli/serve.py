"""`katib-nas serve`: run the suggestion service."""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve Katib's Suggestion API for all katib-nas algorithms",
                                   description="Serve Katib's Suggestion gRPC API (envelopenet, proxylessnas, "
                                               "nas-random) and grpc.health.v1 Health.")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=6789, help="port to listen on (default 6789, Katib's)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent calls (default 4)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds in-flight calls get to finish after SIGTERM (default 30)")
    parser.add_argument("--max-message-mb", type=int, default=32,
                        help="largest request accepted, in MiB: Katib sends every trial in each request (default 32)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.suggestion.service.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.host, args.port, args.workers, args.grace, args.max_message_mb)
