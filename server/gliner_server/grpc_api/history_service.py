"""gliner.v1.InferenceHistoryService over the history store, scoped to the caller."""
from __future__ import annotations

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from gliner_client.v1 import history_service_pb2 as history_pb2
from gliner_client.v1 import history_service_pb2_grpc as history_grpc

from ..errors import ServiceError
from .admission import Admission
from .auth import ApiKeys
from .calls import rpc, streaming_rpc
from .convert import json_http_body
from .service import caller_of

DEFAULT_PAGE = 20


def _timestamp(moment) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _value(data) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def feedback_to_proto(feedback) -> history_pb2.Feedback:
    message = history_pb2.Feedback(id=feedback.id, verdict=feedback.verdict,
                                   created_at=_timestamp(feedback.created_at))
    if feedback.corrected_output is not None:
        message.corrected_output.update(feedback.corrected_output)
    return message


def inference_to_proto(record, feedback=None) -> history_pb2.Inference:
    message = history_pb2.Inference(
        id=record.id, created_at=_timestamp(record.created_at), route=record.route, model_id=record.model_id,
        task=record.task, text=record.text, latency_ms=record.latency_ms, project_id=record.project_id or "",
        training_job_id=record.training_job_id or "", privacy_mode=record.privacy,
        request_id=record.request_id or "")
    for name in ("schema", "parameters", "output"):
        value = getattr(record, name)
        if value is not None:
            getattr(message, name).CopyFrom(_value(value))
    if feedback is not None:
        message.feedback.CopyFrom(feedback_to_proto(feedback))
    return message


class InferenceHistoryService(history_grpc.InferenceHistoryServiceServicer):
    """Every call takes one of ``admission``'s slots (a few threads, apart from the model calls' and from
    those kept for health checks) and waits at most the store's timeout for the database."""

    def __init__(self, store, keys: ApiKeys, admission: Admission | None = None, *, chunk_bytes: int = 1 << 20):
        self.store = store
        self.keys = keys
        self.admission = admission or Admission(4, "history calls")
        self.chunk_bytes = chunk_bytes   # most bytes of JSONL per streamed message

    def _client(self, context, call) -> str:
        return caller_of(self.keys, context, call).client_id

    @rpc
    def ListInferences(self, request, context, call):
        client = self._client(context, call)
        limit = request.limit if request.HasField("limit") else DEFAULT_PAGE
        offset = request.offset if request.HasField("offset") else 0
        with self.admission.slot():
            records, total = self.store.list(
                client, limit=limit, offset=offset, model_id=request.model_id or None, task=request.task or None,
                project_id=request.project_id or None, training_job_id=request.training_job_id or None)
            feedback = self.store.current_feedback_many(client, [r.id for r in records])
        return history_pb2.ListInferencesResponse(
            inferences=[inference_to_proto(r, feedback.get(r.id)) for r in records],
            total=total, limit=limit, offset=offset)

    @rpc
    def GetInference(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            return inference_to_proto(*self.store.get_with_feedback(client, request.id))

    @rpc
    def SubmitFeedback(self, request, context, call):
        corrected = (json_format.MessageToDict(request.corrected_output)
                     if request.HasField("corrected_output") else None)
        if not request.verdict:
            raise ServiceError.invalid("Missing required field: verdict", field="verdict")
        client = self._client(context, call)
        with self.admission.slot():
            feedback = self.store.add_feedback(client, request.id, request.verdict, corrected)
        return history_pb2.SubmitFeedbackResponse(inference_id=request.id, feedback=feedback_to_proto(feedback))

    @streaming_rpc
    def ExportFeedback(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            sent = False
            for lines in self.store.export_training_pages(client_id=client):
                for chunk in _chunks(lines, self.chunk_bytes):
                    yield _ndjson(chunk)
                    sent = True
            if not sent:   # an empty export is still an (empty) NDJSON body, not a JSON one
                yield _ndjson(b"")


def _chunks(lines: list[str], limit: int):
    """Whole lines, joined into pieces of at most ``limit`` bytes (a longer line is a piece of its own)."""
    piece: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if piece and size + len(data) > limit:
            yield b"".join(piece)
            piece, size = [], 0
        piece.append(data)
        size += len(data)
    if piece:
        yield b"".join(piece)


def _ndjson(data: bytes):
    body = json_http_body(data)
    body.content_type = "application/x-ndjson"
    return body
