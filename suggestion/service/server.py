"""The suggestion server: Katib's Suggestion service plus standard gRPC health checking."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2_grpc

from .servicer import SuggestionServicer

log = logging.getLogger(__name__)

#: The service name Katib's readiness and liveness probes ask for.
HEALTH_SERVICE_NAME = "manager.v1beta1.Suggestion"
#: Katib sends every trial in each request; gRPC's 4 MiB default is reached after a few thousand trials.
DEFAULT_MAX_MESSAGE_MB = 32


def build_server(host: str, port: int, workers: int,
                 max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A started server with health SERVING; returns the bound port (useful with port 0)."""
    limit = max_message_mb * 1024 * 1024
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
    api_pb2_grpc.add_SuggestionServicer_to_server(SuggestionServicer(), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise InvalidInput(f"cannot listen on {host}:{port} (address in use or not available)")
    server.start()
    for name in ("", HEALTH_SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, bound


def serve(host: str, port: int, workers: int = 4, grace_seconds: float = 30.0,
          max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> int:
    """Serve until SIGTERM or SIGINT; then report NOT_SERVING, let in-flight calls finish, exit 0."""
    server, health_servicer, bound = build_server(host, port, workers, max_message_mb)
    log.info("serving Suggestion and health on %s:%d", host, bound)

    def shutdown(signum: int, _frame: object) -> None:
        log.info("received %s: health NOT_SERVING, finishing in-flight calls", signal.Signals(signum).name)
        health_servicer.enter_graceful_shutdown()
        threading.Thread(target=server.stop, args=(grace_seconds,), daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()
    log.info("stopped")
    return 0
