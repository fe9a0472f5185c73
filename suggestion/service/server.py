"""The suggestion server: Katib's Suggestion service plus standard gRPC health checking.

It runs on grpc.aio: the event loop accepts every call and answers health
checks itself, while GetSuggestions and ValidateAlgorithmSettings run on a pool
of `workers` threads. A health Check is therefore answered while every worker
is busy; Katib's liveness probe restarts a suggestion pod whose check times out.
The workers hold Python's GIL while they compute, so the server shortens the
interpreter's switch interval: the event loop then gets the GIL within a
fraction of a millisecond instead of waiting 5 ms behind each worker (with 4 workers
under 32 concurrent clients this took the health check's median from 524 ms
to 25-47 ms; see RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import HEALTH_SERVICE, api_pb2_grpc

from .message_size import DEFAULT_MAX_MESSAGE_MB
from .servicer import SuggestionServicer

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds a thread may hold the GIL while another waits for it (Python's default is 0.005).
GIL_SWITCH_INTERVAL = 0.0002
#: Blocks of at least this many bytes get their own mapping, returned to the system when freed. glibc starts
#: at this value but raises it to the size of each mapped block freed, after which request-sized buffers (a
#: 1,000-trial request is about 170 KB) come from the heap and stay in the server's resident set.
MMAP_THRESHOLD_BYTES = 128 * 1024
#: One malloc arena for all threads: a request is parsed on gRPC's threads and converted on a worker, and each
#: thread's own arena would keep its high-water mark. The threads mostly wait for the GIL, so they seldom
#: contend for the arena's lock.
MALLOC_ARENAS = 1
#: glibc's mallopt parameter numbers (malloc.h).
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


@dataclass(frozen=True)
class RunningServer:
    """A started server: the gRPC server, its health servicer, the bound port and the worker pool."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    port: int
    pool: ThreadPoolExecutor


async def start_server(host: str, port: int, workers: int,
                       max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> RunningServer:
    """A started server with health SERVING; `port` 0 picks a free port (see RunningServer.port)."""
    limit = max_message_mb * 1024 * 1024
    # gRPC sets SO_REUSEPORT by default: a second server on the same port would start and take half the calls.
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
               ("grpc.so_reuseport", 0)]
    check_port_free(host, port)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="suggestion")
    server = grpc.aio.server(options=options)
    api_pb2_grpc.add_SuggestionServicer_to_server(SuggestionServicer(pool), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        pool.shutdown(wait=False)
        raise InvalidInput(f"cannot listen on {host}:{port} (address in use or not available)")
    await server.start()
    for name in ("", HEALTH_SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health, bound, pool)


def check_port_free(host: str, port: int) -> None:
    """InvalidInput naming the port when a server already listens on it (checked as gRPC binds: SO_REUSEADDR,
    no SO_REUSEPORT), before gRPC tries and logs its own multi-line error."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return  # gRPC reports an address it cannot resolve
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise InvalidInput(f"cannot listen on {host}:{port}: the port is in use (another server listens "
                                   "on it)") from None


async def stop_server(running: RunningServer, grace_seconds: float) -> None:
    """Health NOT_SERVING, then let in-flight calls finish for up to `grace_seconds`."""
    await running.health.enter_graceful_shutdown()
    await running.server.stop(grace_seconds)
    running.pool.shutdown(wait=False, cancel_futures=True)


def tune_malloc() -> bool:
    """Set glibc's mmap threshold and arena count (above) before the server's threads start, so that its
    resident set stays near what is in use; False where the C library does not take the settings."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_ARENA_MAX, MALLOC_ARENAS) == 1


def serve(host: str, port: int, workers: int = 1, grace_seconds: float = 30.0,
          max_message_mb: int = DEFAULT_MAX_MESSAGE_MB) -> int:
    """Serve until SIGTERM or SIGINT; then report NOT_SERVING, let in-flight calls finish, exit 0."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    if not tune_malloc():
        log.debug("the C library takes no mallopt settings: the server's memory keeps its allocator's defaults")
    return asyncio.run(_serve(host, port, workers, grace_seconds, max_message_mb))


async def _serve(host: str, port: int, workers: int, grace_seconds: float, max_message_mb: int) -> int:
    running = await start_server(host, port, workers, max_message_mb)
    log.info("serving Suggestion and health on %s:%d with %d worker(s)", host, running.port, workers)
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, received.put_nowait, signum)
    signum = await received.get()
    log.info("received %s: health NOT_SERVING, finishing in-flight calls", signum.name)
    await stop_server(running, grace_seconds)
    log.info("stopped")
    return 0
