"""A thin typed client over the generated gliner.v1 stubs.

    with GlinerClient("localhost:8080", api_key="KEY") as client:
        schema = build_schema(entities={"company": "", "person": "a human"},
                              classifications={"sentiment": ["positive", "negative"]})
        result = client.extract("Tim Cook leads Apple.", schema).result
        for mention in result.entities:
            print(mention.label, mention.text, mention.start, mention.end, mention.score)
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .v1 import gliner_service_pb2 as service_pb2
from .v1 import gliner_service_pb2_grpc as service_grpc
from .v1 import schema_pb2

_KIND = {None: schema_pb2.VALUE_KIND_UNSPECIFIED, "list": schema_pb2.VALUE_KIND_LIST,
         "str": schema_pb2.VALUE_KIND_STR}


class GlinerError(Exception):
    """A failed call: the gRPC status, its message and the service's error code."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str | None = None,
                 field: str | None = None):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.reason, self.field = code, message, reason, field

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> GlinerError:
        reason = field = None
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad) and bad.field_violations:
                field = bad.field_violations[0].field
        return cls(error.code(), error.details() or "", reason, field)


def _named(items: None | Sequence[str] | Mapping[str, Any]) -> list[tuple[str, dict]]:
    if not items:
        return []
    if isinstance(items, Mapping):
        return [(name, cfg if isinstance(cfg, Mapping) else {"description": cfg or ""})
                for name, cfg in items.items()]
    return [(name, {}) for name in items]


def build_schema(*, entities=None, classifications: Mapping[str, Any] | None = None,
                 structures: Mapping[str, Sequence[Any]] | None = None, relations=None) -> schema_pb2.Schema:
    """A ``gliner.v1.Schema`` from plain Python values.

    ``entities``/``relations``: a list of names, or name → description (or →
    ``{"description", "threshold", "dtype"}``). ``classifications``: task → labels
    (or → ``{"labels", "multi_label", "cls_threshold"}``). ``structures``: name →
    fields, each ``{"name", "dtype", "choices", "description", "threshold"}``.
    """
    schema = schema_pb2.Schema()
    for name, cfg in _named(entities):
        schema.entities.add(name=name, description=cfg.get("description", ""), threshold=cfg.get("threshold"),
                            kind=_KIND[cfg.get("dtype")])
    for name, cfg in (classifications or {}).items():
        cfg = cfg if isinstance(cfg, Mapping) else {"labels": cfg}
        schema.classifications.add(name=name, labels=list(cfg["labels"]), multi_label=cfg.get("multi_label", False),
                                   cls_threshold=cfg.get("cls_threshold"))
    for name, fields in (structures or {}).items():
        structure = schema.structures.add(name=name)
        for f in fields:
            structure.fields.add(name=f["name"], kind=_KIND[f.get("dtype")], choices=f.get("choices") or [],
                                 description=f.get("description", ""), threshold=f.get("threshold"))
    for name, cfg in _named(relations):
        schema.relations.add(name=name, description=cfg.get("description", ""), threshold=cfg.get("threshold"))
    return schema


class GlinerClient:
    """Calls gliner.v1.GlinerService over gRPC (through Envoy or directly)."""

    def __init__(self, target: str, api_key: str | None = None, *, timeout: float = 30.0,
                 credentials: grpc.ChannelCredentials | None = None, options: Iterable = ()):
        self.channel = (grpc.secure_channel(target, credentials, options=list(options)) if credentials
                        else grpc.insecure_channel(target, options=list(options)))
        self.stub = service_grpc.GlinerServiceStub(self.channel)
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.timeout = timeout

    def _call(self, method, request):
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise GlinerError.from_rpc_error(error) from None

    def extract(self, text: str, schema: schema_pb2.Schema, *, threshold: float | None = None,
                model_id: str = "", **history) -> service_pb2.ExtractResponse:
        """``history``: project_id, training_job_id, privacy_mode (recorded with the inference)."""
        return self._call(self.stub.Extract, service_pb2.ExtractRequest(
            text=text, schema=schema, threshold=threshold, model_id=model_id, **history))

    def batch_extract(self, texts: Sequence[str], schema: schema_pb2.Schema, *, threshold: float | None = None,
                      model_id: str = "", **history) -> service_pb2.BatchExtractResponse:
        return self._call(self.stub.BatchExtract, service_pb2.BatchExtractRequest(
            texts=list(texts), schema=schema, threshold=threshold, model_id=model_id, **history))

    def gliner2(self, body: Mapping[str, Any]) -> Any:
        """POST /gliner-2 semantics over gRPC: the provider's JSON body in, its JSON answer out."""
        request = service_pb2.Gliner2Request(body=httpbody_pb2.HttpBody(
            content_type="application/json", data=json.dumps(body).encode()))
        return json.loads(self._call(self.stub.Gliner2, request).data)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GlinerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
