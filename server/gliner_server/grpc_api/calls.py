"""What every RPC does around its handler: request id, error mapping, metrics, and one log line.

* **Request id**: the caller's ``x-request-id`` (Envoy sets one on every call it
  forwards, REST or gRPC, keeping a client's own), else a new one. It is sent
  back (response header / initial or trailing metadata), recorded with the
  inferences, and keys idempotent retries (``core.recording``).
* **Errors**: a :class:`ServiceError` becomes its gRPC status with details
  (``status.py``); anything else is logged and becomes ``INTERNAL``.
* **One log line per call** on the ``gliner2.access`` logger: request id,
  route, method, model, client, status, latency, queue and model time, texts and
  tokens. Never a text, a key or a body.
"""
from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass, field

import grpc

from .. import metrics
from ..errors import ErrorKind, ServiceError
from ..logs import REQUEST_FIELDS
from .status import abort, grpc_code

logger = logging.getLogger(__name__)
access_log = logging.getLogger("gliner2.access")

REQUEST_ID = "x-request-id"
CHUNKS_HEADER = "x-gliner-chunks"  # per text, how many windows a text longer than the model's was run in
ORIGINAL_PATH = "x-envoy-original-path"  # set by Envoy's transcoder: the REST path of a transcoded call
MAX_REQUEST_ID = 200


@dataclass
class RpcCall:
    """One RPC as it is served: the handler fills in what the log line and the response headers say."""

    method: str
    request_id: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    client: str = "-"
    model: str = "-"
    texts: int = 0
    tokens: int = 0
    queue_ms: float = 0.0
    model_ms: float = 0.0
    chunks: tuple[int, ...] = ()
    code: str = "OK"
    failed: ServiceError | None = None   # a streamed call that failed after its stream opened (status OK)

    def served(self, outcome) -> None:
        """What an ExtractionOutcome (or a list of them) tells the log and the headers."""
        outcomes = outcome if isinstance(outcome, list) else [outcome]
        outcomes = [o for o in outcomes if not isinstance(o, ServiceError)]
        if not outcomes:
            return
        self.model = outcomes[0].model_id
        self.texts += sum(len(o.texts) for o in outcomes)
        self.tokens += sum(o.tokens for o in outcomes)
        self.queue_ms = max(self.queue_ms, max(o.queue_ms for o in outcomes))
        self.model_ms = max(self.model_ms, max(o.latency_ms for o in outcomes))
        self.chunks = tuple(n for o in outcomes for n in o.chunks)

    def response_metadata(self) -> tuple[tuple[str, str], ...]:
        headers = [(REQUEST_ID, self.request_id)]
        if any(n > 1 for n in self.chunks):  # long texts were processed in windows
            headers.append((CHUNKS_HEADER, ",".join(map(str, self.chunks))))
        return tuple(headers)


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


def new_call(method: str, context: grpc.ServicerContext) -> RpcCall:
    metadata = _metadata(context)
    given = metadata.get(REQUEST_ID, "").strip()[:MAX_REQUEST_ID]
    # sent back as metadata and written to logs: printable ASCII only, else one of our own
    request_id = given if given and all(" " < c <= "~" for c in given) else uuid.uuid4().hex
    path = metadata.get(ORIGINAL_PATH)
    route = path.split("?", 1)[0] if path else f"grpc:{method}"
    return RpcCall(method=method, request_id=request_id, route=route)


def rpc(method):
    """Serves a handler ``(self, request, context, call)`` as a gRPC method ``(self, request, context)``."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext):
        call = new_call(method.__name__, context)
        try:
            response = method(self, request, context, call)
            gone = _caller_gone(context)
            if gone is not None:   # cancelled or past its deadline meanwhile: no one to answer
                raise gone
            context.send_initial_metadata(call.response_metadata())
            return response
        except ServiceError as error:
            call.code = grpc_code(error.kind).name
            _finish(call, error)
            abort(context, error, metadata=((REQUEST_ID, call.request_id),))
        except Exception:
            call.code = grpc.StatusCode.INTERNAL.name
            logger.exception("unexpected failure in %s (request %s)", method.__name__, call.request_id)
            error = ServiceError(ErrorKind.SERVER_ERROR, "Internal server error")
            _finish(call, error)
            abort(context, error, metadata=((REQUEST_ID, call.request_id),))
        finally:
            if call.code == "OK":
                _finish(call, None)

    return handler


def streaming_rpc(method):
    """:func:`rpc` for a server-streaming handler (a generator of responses)."""

    @functools.wraps(method)
    def handler(self, request, context: grpc.ServicerContext):
        call = new_call(method.__name__, context)
        error = None
        try:
            stream = method(self, request, context, call)
            first = next(stream, None)   # errors before the first message still get a status
            gone = _caller_gone(context)
            if gone is not None:
                raise gone
            context.send_initial_metadata(call.response_metadata())
            if first is not None:
                yield first
                yield from stream
        except ServiceError as failed:
            error = failed
        except Exception:
            logger.exception("unexpected failure in %s (request %s)", method.__name__, call.request_id)
            error = ServiceError(ErrorKind.SERVER_ERROR, "Internal server error")
        if error is None and call.failed is not None:    # told in the stream itself: logged and counted alike
            call.code = grpc_code(call.failed.kind).name
            _finish(call, call.failed)
            return
        call.code = "OK" if error is None else grpc_code(error.kind).name
        _finish(call, error)
        if error is not None:
            abort(context, error, metadata=((REQUEST_ID, call.request_id),))

    return handler


def _caller_gone(context: grpc.ServicerContext) -> ServiceError | None:
    """The error to log for a call whose caller left (cancelled it, or its deadline passed), else None."""
    if context.is_active():
        return None
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return ServiceError(ErrorKind.DEADLINE_EXCEEDED, "The call's deadline passed before it was answered")
    return ServiceError(ErrorKind.CANCELLED, "The caller cancelled the call")


def _finish(call: RpcCall, error: ServiceError | None) -> None:
    seconds = time.perf_counter() - call.started
    metrics.observe_rpc(call.method, call.code, seconds, refusal=error.reason if error is not None else None)
    status = ErrorKind.SERVER_ERROR.http_status if error is None and call.code != "OK" else \
        (error.kind.http_status if error is not None else 200)
    access_log.info(
        "request_id=%s route=%s method=%s model=%s client=%s status=%s http=%d latency_ms=%.1f queue_ms=%.1f "
        "model_ms=%.1f texts=%d tokens=%d", call.request_id, call.route, call.method, call.model, call.client,
        call.code, status, seconds * 1000.0, call.queue_ms, call.model_ms, call.texts, call.tokens,
        extra={REQUEST_FIELDS: {
            "request_id": call.request_id, "route": call.route, "method": call.method, "model": call.model,
            "client": call.client, "status": call.code, "http_status": status,
            "latency_ms": round(seconds * 1000.0, 3), "queue_ms": round(call.queue_ms, 3),
            "model_ms": round(call.model_ms, 3), "texts": call.texts, "tokens": call.tokens,
        }})
