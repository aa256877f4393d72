"""Anthropic-compatible ``POST /v1/messages``.

Pure translation between the Anthropic SDK's JSON and the core (see
:mod:`.llm_calls`). The extraction is driven by ``schema`` (extra_body), by a
JSON Schema output format (``output_config.format``, what
``client.messages.parse(output_format=Model)`` sends, or the older top-level
``output_format``), or by a forced tool (``tool_choice`` ``{"type": "tool",
"name"}``, or ``{"type": "any"}`` with one tool): the answer is then a
``tool_use`` block whose ``input`` is the extracted object, with
``stop_reason`` ``tool_use``. Otherwise the answer is one ``text`` block and
``stop_reason`` ``end_turn``.

With ``"stream": true``: ``message_start``, ``content_block_start``,
``content_block_delta`` (``text_delta`` or ``input_json_delta``),
``content_block_stop``, ``message_delta`` (the stop reason and the usage, with
the input tokens, which are known only once the model has run) and
``message_stop``. ``max_tokens``, ``system``, ``temperature`` and the like are
accepted and ignored. Usage: input tokens = encoder tokens, output tokens = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import EndpointConfig
from ..core.recording import ANONYMOUS, Caller, Recorded
from ..errors import ServiceError
from . import body as fields
from .llm_calls import (
    EXTRA_PROPERTIES,
    JsonSchemaAsk,
    LlmCall,
    forced_tool,
    last_user_text,
    new_id,
    parse_call,
    pieces,
    sse,
)

ROUTE = "/v1/messages"

REQUEST_SCHEMA = {
    "type": "object", "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string"}, "stream": {"type": "boolean"}, "max_tokens": {"type": "integer"},
        "messages": {"type": "array", "items": {"type": "object"}, "minItems": 1},
        "tools": {"type": "array"}, "tool_choice": {"type": "object"},
        "output_config": {"type": "object"}, "output_format": {"type": "object"},
        **EXTRA_PROPERTIES,
    },
}
RESPONSE_SCHEMA = {"type": "object", "description": "an Anthropic Message, or its Server-Sent Events with "
                                                    "stream: true"}


def _output_format(body: dict) -> JsonSchemaAsk | None:
    config = body.get("output_config")
    where = "output_config.format"
    if config is not None:
        if not isinstance(config, dict):
            raise ServiceError.invalid("output_config must be an object", field="output_config")
        spec = config.get("format")
    else:
        spec, where = body.get("output_format"), "output_format"
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema" or "schema" not in spec:
        raise ServiceError.invalid(f'{where} must be {{"type": "json_schema", "schema": {{...}}}}',
                                   field=where.split(".")[0])
    schema = spec["schema"]
    title = schema.get("title") if isinstance(schema, dict) else None
    return JsonSchemaAsk(name=title if isinstance(title, str) and title.strip() else "output", schema=schema,
                         where=f"{where}.schema")


def _forced_tool(body: dict) -> JsonSchemaAsk | None:
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise ServiceError.invalid("tool_choice must be an object", field="tool_choice")
    choice = choice or {}
    named = choice.get("name") if choice.get("type") == "tool" else None
    if choice.get("type") == "tool" and not isinstance(named, str):
        raise ServiceError.invalid('tool_choice {"type": "tool"} needs the tool\'s name', field="tool_choice")
    found = forced_tool(body.get("tools"), choice, where="tools", named=named, any_choice=choice.get("type") == "any")
    if found is None:
        return None
    index, tool = found
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or tool.get("input_schema") is None:
        raise ServiceError.invalid(f"tools[{index}] must have a name and an input_schema", field="tools")
    return JsonSchemaAsk(name=tool["name"], schema=tool["input_schema"], where=f"tools[{index}].input_schema",
                         tool=True)


@dataclass(frozen=True)
class MessageCall:
    call: LlmCall
    id: str = field(default_factory=lambda: new_id("msg_"))
    tool_use_id: str = field(default_factory=lambda: new_id("toolu_"))

    @property
    def _tool(self) -> str | None:
        return self.call.driver.tool_name

    def _message(self, content: list, stop_reason: str | None, usage: dict, inference_id=None) -> dict:
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.call.model,
                   "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
        if inference_id is not None:
            message["inference_id"] = inference_id
        return message

    @staticmethod
    def _usage(tokens: int) -> dict:
        return {"input_tokens": tokens, "output_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0}

    @property
    def _stop_reason(self) -> str:
        return "tool_use" if self._tool is not None else "end_turn"

    def answer(self, recorded: Recorded) -> dict:
        result = recorded.outcome.results[0]
        if self._tool is not None:
            block = {"type": "tool_use", "id": self.tool_use_id, "name": self._tool,
                     "input": self.call.driver.content(result)}
        else:
            block = {"type": "text", "text": self.call.driver.text(result)}
        return self._message([block], self._stop_reason, self._usage(recorded.outcome.tokens),
                             recorded.inference_id)

    @staticmethod
    def stream_error(error: ServiceError) -> bytes:
        return stream_error(error)

    def opening(self) -> list[bytes]:
        block = {"type": "tool_use", "id": self.tool_use_id, "name": self._tool, "input": {}} \
            if self._tool is not None else {"type": "text", "text": ""}
        return [sse({"type": "message_start", "message": self._message([], None, self._usage(0))},
                    event="message_start"),
                sse({"type": "content_block_start", "index": 0, "content_block": block},
                    event="content_block_start")]

    def closing(self, recorded: Recorded) -> list[bytes]:
        text = self.call.texts(recorded.outcome.results)[0]
        kind, key = ("input_json_delta", "partial_json") if self._tool is not None else ("text_delta", "text")
        events = [sse({"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: piece}},
                      event="content_block_delta") for piece in pieces(text)]
        usage = self._usage(recorded.outcome.tokens)
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                 "usage": usage}
        if recorded.inference_id is not None:
            delta["inference_id"] = recorded.inference_id
        return [*events,
                sse({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
                sse(delta, event="message_delta"),
                sse({"type": "message_stop"}, event="message_stop")]


def stream_error(error: ServiceError) -> bytes:
    """An error after the stream opened: Anthropic's ``error`` event, which the SDK raises on."""
    return sse({"type": "error", "error": {"type": error.kind.error_type("anthropic"), "message": error.message}},
               event="error")


def parse(raw: bytes, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None
          ) -> MessageCall:
    body = fields.decode_object(raw)
    text = last_user_text(body.get("messages"))
    ask = None
    if body.get("schema") is None:     # a schema comes first: the rest is then not read
        ask = _output_format(body) or _forced_tool(body)
    return MessageCall(call=parse_call(body, route=ROUTE, texts=(text,), ask=ask, caller=caller,
                                       endpoints=endpoints))
