"""Katib's Suggestion gRPC service: protobuf in, core call, protobuf out.

Each call runs on the worker pool, so the event loop stays free for health
checks. User errors become INVALID_ARGUMENT with the core's message. Anything
else is logged with its traceback and answered with the code on which Katib
does what a fault calls for: INTERNAL from GetSuggestions (Katib retries every
failed GetSuggestions), UNKNOWN from ValidateAlgorithmSettings (Katib takes
UNKNOWN, like INVALID_ARGUMENT, as failed validation and fails the Experiment
with the message; INTERNAL or DEADLINE_EXCEEDED it takes as settings that
passed). Every
call logs one line when it starts and one when it ends, with its outcome and
duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Callable, TypeVar

import grpc

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2, api_pb2_grpc

from ..core import engine
from . import convert

log = logging.getLogger(__name__)
R = TypeVar("R")
#: Longest status message sent, in bytes of UTF-8. gRPC sends it percent-encoded in a trailer, and a client
#: refuses trailers above 8 KiB (RESOURCE_EXHAUSTED instead of the status the server meant).
MAX_DETAILS_BYTES = 1000


def get_suggestions(request: api_pb2.GetSuggestionsRequest) -> api_pb2.GetSuggestionsReply:
    """GetSuggestions computed: protobuf in, core call, protobuf out (InvalidInput for bad input)."""
    experiment = convert.experiment_info(request.experiment)
    history = [convert.trial_record(t, i) for i, t in enumerate(request.trials)]
    proposal = engine.suggest(experiment, history, request.current_request_number, first_index(request))
    return convert.suggestions_reply(proposal, experiment.algorithm)


def validate_algorithm_settings(request: api_pb2.ValidateAlgorithmSettingsRequest
                                ) -> api_pb2.ValidateAlgorithmSettingsReply:
    """ValidateAlgorithmSettings computed: an empty reply, or InvalidInput naming what is wrong."""
    engine.validate(convert.experiment_info(request.experiment))
    return api_pb2.ValidateAlgorithmSettingsReply()


class SuggestionServicer(api_pb2_grpc.SuggestionServicer):
    """Serves every registered algorithm on grpc.aio; the request's algorithm_name picks one."""

    def __init__(self, pool: Executor):
        self.pool = pool

    async def GetSuggestions(self, request: api_pb2.GetSuggestionsRequest,
                             context: grpc.aio.ServicerContext) -> api_pb2.GetSuggestionsReply:
        call = CallLog("GetSuggestions", request.experiment, request.current_request_number, len(request.trials))
        return await self._run(call, lambda: get_suggestions(request), context, grpc.StatusCode.INTERNAL)

    async def ValidateAlgorithmSettings(self, request: api_pb2.ValidateAlgorithmSettingsRequest,
                                        context: grpc.aio.ServicerContext
                                        ) -> api_pb2.ValidateAlgorithmSettingsReply:
        call = CallLog("ValidateAlgorithmSettings", request.experiment, 0, 0)
        return await self._run(call, lambda: validate_algorithm_settings(request), context, grpc.StatusCode.UNKNOWN)

    async def _run(self, call: "CallLog", answer: Callable[[], R], context: grpc.aio.ServicerContext,
                   fault: grpc.StatusCode) -> R:
        """`answer()` on the worker pool; bad input answered INVALID_ARGUMENT, any other error `fault`."""
        call.started()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.pool, answer)
        except InvalidInput as err:
            call.ended("invalid")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bounded_details(str(err)))
        except Exception as err:  # an algorithm bug: logged, and answered with the code Katib acts on
            log.exception("%s failed", call.method)
            call.ended("internal")
            await context.abort(fault, bounded_details(f"{call.method} failed: {type(err).__name__}: {err}"))
        call.ended("ok")
        return result


class CallLog:
    """The start and end log lines of one call."""

    def __init__(self, method: str, experiment: api_pb2.Experiment, requested: int, trials: int):
        self.method = method
        self.fields = (f"experiment={_printable(experiment.name)} "
                       f"algorithm={_printable(experiment.spec.algorithm.algorithm_name)} "
                       f"requested={requested} trials={trials}")
        self.start = time.perf_counter()

    def started(self) -> None:
        log.info("%s started %s", self.method, self.fields)

    def ended(self, outcome: str) -> None:
        milliseconds = (time.perf_counter() - self.start) * 1000
        log.info("%s %s ms=%.1f outcome=%s", self.method, self.fields, milliseconds, outcome)


def bounded_details(text: str) -> str:
    """`text` cut to MAX_DETAILS_BYTES of UTF-8 (at a character boundary), saying that it was cut."""
    data = text.encode()
    if len(data) <= MAX_DETAILS_BYTES:
        return text
    kept = data[:MAX_DETAILS_BYTES - 40].decode(errors="ignore")
    return f"{kept}... ({len(data)} bytes, cut)"


def _printable(text: str) -> str:
    """`text` as it is when it is short and printable, else its shortened repr: one log line per event."""
    return text if len(text) <= 100 and text.isprintable() and " " not in text else repr(text[:100])


def first_index(request: api_pb2.GetSuggestionsRequest) -> int:
    """How many suggestions the experiment received before this request."""
    if request.total_request_number > 0:
        return max(request.total_request_number - request.current_request_number, 0)
    return len(request.trials)
