"""The OpenAPI 3.1 description of the REST routes, generated from the protos.

Every operation comes from a ``google.api.http`` rule of the served services
(the same rules Envoy's transcoder routes by), and every typed body from its
protobuf message, printed as the transcoder prints it (proto field names,
int64 as strings, well-known types as JSON). The three provider dialects carry
raw JSON (``google.api.HttpBody``); their body schemas are the dialect modules'
own ``REQUEST_SCHEMA`` / ``RESPONSE_SCHEMA``, next to the code that parses them.
Error responses all have the one shape of :mod:`gliner_server.errors`.

``gliner2-openapi`` prints it; Envoy serves it at ``GET /openapi.json``.
"""
from __future__ import annotations

import json
import re
import sys

from google.api import annotations_pb2
from google.protobuf import descriptor

from .envoy.config import OPENAPI_PATH  # noqa: F401 - where Envoy serves this document
from .envoy.descriptors import bindings
from .errors import ErrorKind

_HTTP_BODY = "google.api.HttpBody"
_EVENT_STREAM = "text/event-stream"
_WELL_KNOWN = {
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
}
_SCALARS = {
    descriptor.FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    descriptor.FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    descriptor.FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    descriptor.FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    descriptor.FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    descriptor.FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    descriptor.FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0},
    # proto3 JSON prints 64-bit integers as strings
    descriptor.FieldDescriptor.TYPE_INT64: {"type": "string", "pattern": "^-?[0-9]+$"},
    descriptor.FieldDescriptor.TYPE_SINT64: {"type": "string", "pattern": "^-?[0-9]+$"},
    descriptor.FieldDescriptor.TYPE_SFIXED64: {"type": "string", "pattern": "^-?[0-9]+$"},
    descriptor.FieldDescriptor.TYPE_UINT64: {"type": "string", "pattern": "^[0-9]+$"},
    descriptor.FieldDescriptor.TYPE_FIXED64: {"type": "string", "pattern": "^[0-9]+$"},
    descriptor.FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    descriptor.FieldDescriptor.TYPE_STRING: {"type": "string"},
    descriptor.FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
# What each error status means on these routes (all have ErrorResponse's shape).
_ERRORS = {
    400: "Missing, malformed or invalid fields",
    401: "Missing or wrong API key",
    404: "Unknown route, model or inference",
    405: "Method not allowed on this route",
    413: "Body, text or schema over the server's limits",
    429: "Rate limit for this API key, or the model's queue is full: retry after Retry-After seconds",
    500: "Inference failed: retry with backoff",
    503: "No healthy server behind Envoy (starting, or shutting down): retry",
    504: "No answer within the server's time limit",
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


class _Builder:
    def __init__(self):
        self.schemas: dict[str, dict] = {}

    def message(self, message: descriptor.Descriptor, *, exclude: frozenset = frozenset()) -> dict:
        """The JSON schema of ``message`` (a $ref, or inline when fields are excluded)."""
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if exclude:
            return self._object(message, exclude)
        name = message.full_name.replace(".", "_")
        if name not in self.schemas:
            self.schemas[name] = {}  # recursion guard
            self.schemas[name] = self._object(message, exclude)
        return _ref(name)

    def _object(self, message: descriptor.Descriptor, exclude) -> dict:
        properties = {f.name: self.field(f) for f in message.fields if f.name not in exclude}
        return {"type": "object", "properties": properties}

    def field(self, field: descriptor.FieldDescriptor) -> dict:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.field(value)}
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            schema = self.message(field.message_type)
        elif field.type == descriptor.FieldDescriptor.TYPE_ENUM:
            schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            schema = dict(_SCALARS[field.type])
        if field.is_repeated:
            return {"type": "array", "items": schema}
        return schema


def _dialect_schemas() -> dict[str, tuple[dict, dict]]:
    """Request and response body schemas of the raw-JSON routes, by RPC name."""
    from .dialects import anthropic_api, gliner2_api, inference_api, openai_api, run_api

    return {"Gliner2": (gliner2_api.REQUEST_SCHEMA, gliner2_api.RESPONSE_SCHEMA),
            "Run": (run_api.REQUEST_SCHEMA, run_api.RESPONSE_SCHEMA),
            "Inference": (inference_api.REQUEST_SCHEMA, inference_api.RESPONSE_SCHEMA),
            "CreateChatCompletion": (openai_api.CHAT_REQUEST_SCHEMA, openai_api.RESPONSE_SCHEMA),
            "CreateCompletion": (openai_api.COMPLETIONS_REQUEST_SCHEMA, openai_api.RESPONSE_SCHEMA),
            "CreateResponse": (openai_api.RESPONSES_REQUEST_SCHEMA, openai_api.RESPONSE_SCHEMA),
            "CreateMessage": (anthropic_api.REQUEST_SCHEMA, anthropic_api.RESPONSE_SCHEMA)}


def _rules(method: descriptor.MethodDescriptor):
    """(lower-case verb, path template, body) of the method's HTTP rules, as Envoy routes them."""
    options = method.GetOptions()
    if options.HasExtension(annotations_pb2.http):
        for verb, template, body in bindings(options.Extensions[annotations_pb2.http]):
            yield verb.lower(), template, body


def document(modules, services) -> dict:
    """The OpenAPI document of ``services`` (full names) in the generated ``*_pb2`` ``modules``."""
    builder = _Builder()
    dialects = _dialect_schemas()
    paths: dict[str, dict] = {}
    wanted = set(services)
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name not in wanted:
                continue
            for method in service.methods:
                for index, (verb, template, body) in enumerate(_rules(method)):
                    path_params = re.findall(r"{([^}=]+)", template)
                    path = re.sub(r"{([^}=]+)(=[^}]*)?}", r"{\1}", template)
                    operation = _operation(builder, dialects, service, method, verb, body, path_params)
                    if index:   # an additional binding: operation ids are unique
                        operation["operationId"] += f"_{index + 1}"
                    paths.setdefault(path, {})[verb] = operation
    builder.schemas["ErrorResponse"] = {
        "type": "object", "required": ["error", "detail"],
        "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": sorted({k.provider_code for k in ErrorKind}
                                                          | {"METHOD_NOT_ALLOWED"})},
                "message": {"type": "string"},
                "type": {"type": "string", "description": "on the OpenAI- and Anthropic-compatible routes: the "
                                                          "SDK's error type"},
                "param": {"type": ["string", "null"], "description": "on the OpenAI-compatible routes: the "
                                                                     "field at fault, if any"}}},
            "detail": {"type": "string", "description": "the message again (what GLiNER2API reports)"},
            "type": {"const": "error", "description": "on the Anthropic-compatible route"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gliner2-service", "version": "1",
                 "description": "Self-hosted GLiNER2: Fastino's /gliner-2 and /run, Pioneer's /inference and "
                                "inference history, OpenAI- and Anthropic-compatible routes, and typed "
                                "extraction. Generated from the gliner.v1 protos."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"ApiKey": []}, {"Bearer": []}],
    }


def _operation(builder, dialects, service, method, verb, body, path_params) -> dict:
    request, response = method.input_type, method.output_type
    operation: dict = {"operationId": method.name, "tags": [service.name],
                       "summary": f"{service.full_name}/{method.name}"}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in path_params]
    raw = dialects.get(method.name)
    if body == "*":
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": builder.message(request, exclude=frozenset(path_params))}}}
    elif body and raw is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": raw[0]}}}
    elif not body:  # the remaining fields are query parameters
        for field in request.fields:
            if field.name not in path_params:
                parameters.append({"name": field.name, "in": "query", "required": False,
                                   "schema": builder.field(field)})
    if parameters:
        operation["parameters"] = parameters
    if response.full_name == _HTTP_BODY:
        content = ({"application/json": {"schema": raw[1]}} if raw is not None
                   else {"application/x-ndjson": {"schema": {"type": "string"}}})
        if raw is not None and method.server_streaming:   # the LLM routes: an event stream with "stream": true
            content[_EVENT_STREAM] = {"schema": {"type": "string", "description": "Server-Sent Events"}}
    else:
        content = {"application/json": {"schema": builder.message(response)}}
    responses = {"200": {"description": "OK", "content": content}}
    for status, meaning in _ERRORS.items():
        responses[str(status)] = {"description": meaning,
                                  "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
    operation["responses"] = responses
    return operation


def service_document() -> dict:
    """The document of this server's REST routes."""
    from .grpc_api.server import PROTO_MODULES, SERVICE_NAMES

    return document(PROTO_MODULES, SERVICE_NAMES)


def main() -> None:
    """``gliner2-openapi``: print the OpenAPI document (JSON)."""
    json.dump(service_document(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
