"""Katib's Suggestion gRPC service: protobuf in, core call, protobuf out.

User errors become INVALID_ARGUMENT with the core's message. Anything else
becomes INTERNAL (never UNKNOWN, on which Katib fails the Experiment) and is
logged with its traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import grpc

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2, api_pb2_grpc

from ..core import engine
from . import convert

log = logging.getLogger(__name__)
R = TypeVar("R")


class SuggestionServicer(api_pb2_grpc.SuggestionServicer):
    """Serves every registered algorithm; the request's algorithm_name picks one."""

    def GetSuggestions(self, request: api_pb2.GetSuggestionsRequest,
                       context: grpc.ServicerContext) -> api_pb2.GetSuggestionsReply:
        def answer() -> api_pb2.GetSuggestionsReply:
            experiment = convert.experiment_info(request.experiment)
            history = [convert.trial_record(t) for t in request.trials]
            count = request.current_request_number
            proposal = engine.suggest(experiment, history, count, first_index(request))
            return convert.suggestions_reply(proposal, experiment.algorithm)

        return _call("GetSuggestions", request.experiment, request.current_request_number,
                     len(request.trials), answer, context)

    def ValidateAlgorithmSettings(self, request: api_pb2.ValidateAlgorithmSettingsRequest,
                                  context: grpc.ServicerContext) -> api_pb2.ValidateAlgorithmSettingsReply:
        def answer() -> api_pb2.ValidateAlgorithmSettingsReply:
            engine.validate(convert.experiment_info(request.experiment))
            return api_pb2.ValidateAlgorithmSettingsReply()

        return _call("ValidateAlgorithmSettings", request.experiment, 0, 0, answer, context)


def first_index(request: api_pb2.GetSuggestionsRequest) -> int:
    """How many suggestions the experiment received before this request."""
    if request.total_request_number > 0:
        return max(request.total_request_number - request.current_request_number, 0)
    return len(request.trials)


def _call(method: str, experiment: api_pb2.Experiment, requested: int, trials: int,
          answer: Callable[[], R], context: grpc.ServicerContext) -> R:
    start = time.perf_counter()
    outcome = "ok"
    try:
        return answer()
    except InvalidInput as err:
        outcome = "invalid"
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    except Exception as err:  # an algorithm bug must not surface as UNKNOWN
        outcome = "internal"
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(err).__name__}: {err}")
    finally:
        log.info("%s experiment=%s algorithm=%s requested=%d trials=%d ms=%.1f outcome=%s", method,
                 experiment.name, experiment.spec.algorithm.algorithm_name, requested, trials,
                 (time.perf_counter() - start) * 1000, outcome)
    raise AssertionError("unreachable: context.abort raises")
