"""Serving the OpenAI- and Anthropic-compatible routes: one JSON answer, or a stream of Server-Sent Events.

A parsed call (``dialects.openai_api`` / ``dialects.anthropic_api``) gives
``answer(recorded)`` (a JSON object), ``opening()`` (the events a stream
starts with, before the model has run), ``closing(recorded)`` (the rest) and
``stream_error(error)`` (the event that reports a failure once streaming).

A stream opens only once the call is queued for its model (the core's
``on_started``): every refusal before that (a bad body, an unknown model, a
full queue, a model that failed to load) is still an HTTP error status in the
dialect's shape. The model then runs in a helper thread while this one holds
the open stream; the answer's events follow once the inference is recorded,
and a failure after the stream opened is the dialect's ``error`` event (the
SDKs raise it), never an answer without its record.
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from google.api import httpbody_pb2

from ..core.engine import CallContext
from ..core.recording import Recorded, RecordingEngine
from ..dialects.body import encode_json
from ..errors import ErrorKind, ServiceError
from .calls import RpcCall

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
_STARTED, _DONE = object(), object()
OPENED = b": queued for the model\n\n"    # an SSE comment: opens a stream that has no opening event of its own


def json_body(value: Any) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=encode_json(value))


def event_body(data: bytes) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type=EVENT_STREAM, data=data)


class LlmStreams:
    """Runs parsed LLM-SDK calls on the recording engine; streams run their model call in ``pool``."""

    def __init__(self, engine: RecordingEngine, threads: int):
        self.engine = engine
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads),
                                                          thread_name_prefix="llm-stream")

    def serve(self, parsed, context: CallContext, call: RpcCall) -> Iterator[httpbody_pb2.HttpBody]:
        llm = parsed.call
        call.model = llm.request.model_id or "-"
        if not llm.stream:
            recorded = self.engine.run(llm.request, llm.provenance, context)
            call.served(recorded.outcome)
            yield json_body(parsed.answer(recorded))
            return
        yield from self._stream(parsed, context, call)

    def _stream(self, parsed, context: CallContext, call: RpcCall) -> Iterator[httpbody_pb2.HttpBody]:
        llm = parsed.call
        signals: queue.SimpleQueue = queue.SimpleQueue()
        future = self.pool.submit(self.engine.run, llm.request, llm.provenance,
                                  replace(context, on_started=lambda: signals.put(_STARTED)))
        future.add_done_callback(lambda _: signals.put(_DONE))
        if signals.get() is _DONE:       # refused or failed before it was queued: a proper error status
            recorded = future.result()
            call.served(recorded.outcome)
            yield event_body(b"".join([*parsed.opening(), *parsed.closing(recorded)]))
            return
        yield event_body(b"".join(parsed.opening()) or OPENED)
        signals.get()
        try:
            recorded: Recorded = future.result()
        except ServiceError as error:
            call.failed = error
            yield event_body(parsed.stream_error(error))
            return
        except Exception:
            logger.exception("unexpected failure in a streamed call (request %s)", call.request_id)
            call.failed = ServiceError(ErrorKind.SERVER_ERROR, "Internal server error")
            yield event_body(parsed.stream_error(call.failed))
            return
        call.served(recorded.outcome)
        for event in parsed.closing(recorded):
            yield event_body(event)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
