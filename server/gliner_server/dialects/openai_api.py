"""OpenAI-compatible ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/responses``.

Pure translation between the OpenAI SDK's JSON and the core (see
:mod:`.llm_calls` for what the text is and what drives the extraction). Each
route answers the SDK's own object (``chat.completion``, ``text_completion``,
``response``) or, with ``"stream": true``, its event stream: chat and text
completion chunks ending in ``data: [DONE]`` (a usage chunk first with
``stream_options.include_usage``), or the Responses API's typed events. The
stream opens once the call is queued for the model (so anything refused
before gets its HTTP status) and carries the answer after it is recorded.

``usage`` counts the encoder's subword tokens (text and schema prompt) as
input; nothing is generated, so output tokens are 0. Every answer carries its
history id(s) in ``inference_id`` (``inference_ids`` and per choice for text
completions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import EndpointConfig
from ..core.recording import ANONYMOUS, Caller, Recorded
from ..errors import ServiceError
from . import body as fields
from .llm_calls import (
    EXTRA_PROPERTIES,
    JsonSchemaAsk,
    LlmCall,
    content_text,
    forced_tool,
    last_user_text,
    new_id,
    parse_call,
    pieces,
    sse,
    tool_name,
)

CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"
RESPONSES_ROUTE = "/v1/responses"
DONE = b"data: [DONE]\n\n"

_COMMON_PROPERTIES = {"model": {"type": "string"}, "stream": {"type": "boolean"}, **EXTRA_PROPERTIES}
CHAT_REQUEST_SCHEMA = {
    "type": "object", "required": ["model", "messages"],
    "properties": {
        **_COMMON_PROPERTIES,
        "messages": {"type": "array", "items": {"type": "object"}, "minItems": 1},
        "response_format": {"type": "object"}, "tools": {"type": "array"},
        "tool_choice": {}, "stream_options": {"type": "object"},
    },
}
COMPLETIONS_REQUEST_SCHEMA = {
    "type": "object", "required": ["model", "prompt"],
    "properties": {
        **_COMMON_PROPERTIES,
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "stream_options": {"type": "object"},
    },
}
RESPONSES_REQUEST_SCHEMA = {
    "type": "object", "required": ["model", "input"],
    "properties": {
        **_COMMON_PROPERTIES,
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}, "minItems": 1}]},
        "text": {"type": "object"}, "tools": {"type": "array"}, "tool_choice": {},
    },
}
RESPONSE_SCHEMA = {"type": "object", "description": "the OpenAI object (chat.completion, text_completion or "
                                                    "response), or its Server-Sent Events with stream: true"}


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ServiceError.invalid("stream_options must be an object", field="stream_options")
    return fields.optional_flag(options, "include_usage")


def _json_schema_format(value: Any, where: str) -> JsonSchemaAsk | None:
    """A ``{"type": "json_schema", ...}`` format (chat: under ``json_schema``; Responses: flat), else None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ServiceError.invalid(f"{where} must be an object", field=where.split(".")[0])
    if value.get("type") != "json_schema":
        return None        # "text" or "json_object": no schema to follow
    spec = value.get("json_schema", value) if where == "response_format" else value
    inner = f"{where}.json_schema" if spec is not value else where
    if not isinstance(spec, dict) or "schema" not in spec:
        raise ServiceError.invalid(f"{inner}.schema is required for type json_schema", field=where.split(".")[0])
    name = spec.get("name") if isinstance(spec.get("name"), str) and spec.get("name") else "response"
    return JsonSchemaAsk(name=name, schema=spec["schema"], where=f"{inner}.schema")


def _forced_function(body: dict, *, chat: bool) -> JsonSchemaAsk | None:
    """The function a ``tool_choice`` forces (by name, or "required" with one function tool)."""
    choice = body.get("tool_choice")
    named = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        holder = choice.get("function") if chat else choice
        named = holder.get("name") if isinstance(holder, dict) else None
        if not isinstance(named, str):
            raise ServiceError.invalid("tool_choice names no function", field="tool_choice")
    found = forced_tool(body.get("tools"), choice, where="tools", named=named, any_choice=choice == "required")
    if found is None:
        return None
    index, tool = found
    function = tool.get("function") if chat else tool
    where = f"tools[{index}].function" if chat else f"tools[{index}]"
    if not isinstance(function, dict) or not isinstance(tool_name(tool), str):
        raise ServiceError.invalid(f"{where} must be a function with a name", field="tools")
    if function.get("parameters") is None:
        raise ServiceError.invalid(f"{where}.parameters is required: it says what to extract", field="tools")
    return JsonSchemaAsk(name=tool_name(tool), schema=function["parameters"], where=f"{where}.parameters",
                         tool=True)


def _tool_finish(body: dict) -> str:
    # A call forced by name ends with "stop", as OpenAI's own does; "required" ends with "tool_calls".
    return "tool_calls" if body.get("tool_choice") == "required" else "stop"


# --- chat completions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatCall:
    call: LlmCall
    tool_finish: str = "stop"
    id: str = field(default_factory=lambda: new_id("chatcmpl-"))
    tool_call_id: str = field(default_factory=lambda: new_id("call_"))

    def _chunk(self, delta: dict, finish: str | None = None, **extra) -> bytes:
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.call.created,
                    "model": self.call.model, "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})

    def answer(self, recorded: Recorded) -> dict:
        text = self.call.texts(recorded.outcome.results)[0]
        driver = self.call.driver
        if driver.tool_name is not None:
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [{
                "id": self.tool_call_id, "type": "function",
                "function": {"name": driver.tool_name, "arguments": text}}]}
            finish = self.tool_finish
        else:
            message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            finish = "stop"
        return {"id": self.id, "object": "chat.completion", "created": self.call.created, "model": self.call.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": _usage(recorded.outcome.tokens), "system_fingerprint": None,
                "inference_id": recorded.inference_id}

    @staticmethod
    def stream_error(error: ServiceError) -> bytes:
        return stream_error(error)

    def opening(self) -> list[bytes]:
        if self.call.driver.tool_name is not None:
            return [self._chunk({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": self.tool_call_id, "type": "function",
                "function": {"name": self.call.driver.tool_name, "arguments": ""}}]})]
        return [self._chunk({"role": "assistant", "content": ""})]

    def closing(self, recorded: Recorded) -> list[bytes]:
        text = self.call.texts(recorded.outcome.results)[0]
        inference_id = recorded.inference_id
        tool = self.call.driver.tool_name is not None
        events = [self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} if tool
                              else {"content": piece}, inference_id=inference_id) for piece in pieces(text)]
        events.append(self._chunk({}, self.tool_finish if tool else "stop", inference_id=inference_id))
        if self.call.include_usage:
            events.append(sse({"id": self.id, "object": "chat.completion.chunk", "created": self.call.created,
                               "model": self.call.model, "choices": [], "usage": _usage(recorded.outcome.tokens),
                               "inference_id": inference_id}))
        return [*events, DONE]


def parse_chat(raw: bytes, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None
               ) -> ChatCall:
    body = fields.decode_object(raw)
    text = last_user_text(body.get("messages"))
    ask = None
    if body.get("schema") is None:     # a schema comes first: the rest is then not read
        ask = _json_schema_format(body.get("response_format"), "response_format") \
            or _forced_function(body, chat=True)
    call = parse_call(body, route=CHAT_ROUTE, texts=(text,), ask=ask, caller=caller, endpoints=endpoints,
                      include_usage=_include_usage(body))
    return ChatCall(call=call, tool_finish=_tool_finish(body))


# --- text completions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompletionCall:
    call: LlmCall
    id: str = field(default_factory=lambda: new_id("cmpl-"))

    def _chunk(self, choices: list[dict], **extra) -> bytes:
        return sse({"id": self.id, "object": "text_completion", "created": self.call.created,
                    "model": self.call.model, "system_fingerprint": None, "choices": choices, **extra})

    def answer(self, recorded: Recorded) -> dict:
        ids = _ids(recorded, len(self.call.request.texts))
        choices = [{"text": text, "index": i, "logprobs": None, "finish_reason": "stop", "inference_id": ids[i]}
                   for i, text in enumerate(self.call.texts(recorded.outcome.results))]
        return {"id": self.id, "object": "text_completion", "created": self.call.created, "model": self.call.model,
                "choices": choices, "usage": _usage(recorded.outcome.tokens), "system_fingerprint": None,
                "inference_ids": ids}

    @staticmethod
    def stream_error(error: ServiceError) -> bytes:
        return stream_error(error)

    def opening(self) -> list[bytes]:
        return []    # a text completion stream has no role chunk: it opens with the first text

    def closing(self, recorded: Recorded) -> list[bytes]:
        ids = _ids(recorded, len(self.call.request.texts))
        events = []
        for i, text in enumerate(self.call.texts(recorded.outcome.results)):
            events += [self._chunk([{"text": piece, "index": i, "logprobs": None, "finish_reason": None}],
                                   inference_id=ids[i]) for piece in pieces(text)]
            events.append(self._chunk([{"text": "", "index": i, "logprobs": None, "finish_reason": "stop"}],
                                      inference_id=ids[i]))
        if self.call.include_usage:
            events.append(self._chunk([], usage=_usage(recorded.outcome.tokens)))
        return [*events, DONE]


def parse_completion(raw: bytes, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None
                     ) -> CompletionCall:
    body = fields.decode_object(raw)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: tuple[str, ...] = (prompt,)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = tuple(prompt)
    else:
        raise ServiceError.invalid("prompt must be a string or a non-empty list of strings (token ids are not "
                                   "taken: the text is what is analysed)", field="prompt")
    call = parse_call(body, route=COMPLETIONS_ROUTE, texts=prompts, ask=None, caller=caller, endpoints=endpoints,
                      include_usage=_include_usage(body))
    return CompletionCall(call=call)


# --- responses ---------------------------------------------------------------------------------------

def _input_text(value: Any) -> str:
    """The Responses API ``input``: a string, or items whose last user message is the text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        messages = [item for item in value if isinstance(item, dict) and item.get("type", "message") == "message"]
        if messages:
            return last_user_text(messages, "input")
        return content_text(None, "input")   # no message at all: the same 400
    raise ServiceError.invalid("input must be a string or a list of input items", field="input")


@dataclass(frozen=True)
class ResponseCall:
    call: LlmCall
    echo: dict                      # what the object repeats from the request: tools, tool_choice, text, ...
    id: str = field(default_factory=lambda: new_id("resp_"))
    item_id: str = field(default_factory=lambda: new_id("msg_"))
    tool_call_id: str = field(default_factory=lambda: new_id("call_"))

    def _response(self, status: str, output: list, usage: dict | None, inference_id=None) -> dict:
        response = {"id": self.id, "object": "response", "created_at": self.call.created, "status": status,
                    "model": self.call.model, "output": output, "error": None, "incomplete_details": None,
                    "instructions": None, "metadata": {}, "parallel_tool_calls": False, "temperature": None,
                    "top_p": None, "usage": usage, **self.echo}
        if inference_id is not None:
            response["inference_id"] = inference_id
        return response

    def _item(self, text: str | None, status: str) -> dict:
        if self.call.driver.tool_name is not None:
            return {"type": "function_call", "id": self.item_id.replace("msg_", "fc_", 1),
                    "call_id": self.tool_call_id, "name": self.call.driver.tool_name,
                    "arguments": text or "", "status": status}
        content = [] if text is None else [self._part(text)]
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def _part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def _usage(tokens: int) -> dict:
        return {"input_tokens": tokens, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens}

    def answer(self, recorded: Recorded) -> dict:
        text = self.call.texts(recorded.outcome.results)[0]
        return self._response("completed", [self._item(text, "completed")], self._usage(recorded.outcome.tokens),
                              recorded.inference_id)

    def _events(self, start: int, *events: tuple[str, dict]) -> list[bytes]:
        return [sse({"type": name, "sequence_number": start + i, **data}, event=name)
                for i, (name, data) in enumerate(events)]

    def stream_error(self, error: ServiceError) -> bytes:
        return stream_error(error, responses=True, sequence_number=len(self.opening()))

    def opening(self) -> list[bytes]:
        events = [("response.created", {"response": self._response("in_progress", [], None)}),
                  ("response.in_progress", {"response": self._response("in_progress", [], None)}),
                  ("response.output_item.added", {"output_index": 0, "item": self._item(None, "in_progress")})]
        if self.call.driver.tool_name is None:
            events.append(("response.content_part.added", {"item_id": self.item_id, "output_index": 0,
                                                           "content_index": 0, "part": self._part("")}))
        return self._events(0, *events)

    def closing(self, recorded: Recorded) -> list[bytes]:
        text = self.call.texts(recorded.outcome.results)[0]
        start = len(self.opening())
        done = self._item(text, "completed")
        if self.call.driver.tool_name is not None:
            item = {"item_id": done["id"], "output_index": 0}
            events = [("response.function_call_arguments.delta", {**item, "delta": piece}) for piece in pieces(text)]
            events.append(("response.function_call_arguments.done", {**item, "name": done["name"],
                                                                     "arguments": text}))
        else:
            item = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
            events = [("response.output_text.delta", {**item, "delta": piece, "logprobs": []})
                      for piece in pieces(text)]
            events += [("response.output_text.done", {**item, "text": text, "logprobs": []}),
                       ("response.content_part.done", {**item, "part": self._part(text)})]
        events += [("response.output_item.done", {"output_index": 0, "item": done}),
                   ("response.completed", {"response": self.answer(recorded)})]
        return self._events(start, *events)


def parse_response(raw: bytes, caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None
                   ) -> ResponseCall:
    body = fields.decode_object(raw)
    text = _input_text(body.get("input"))
    ask = None
    if body.get("schema") is None:
        text_options = body.get("text")
        if text_options is not None and not isinstance(text_options, dict):
            raise ServiceError.invalid("text must be an object", field="text")
        ask = _json_schema_format((text_options or {}).get("format"), "text.format") \
            or _forced_function(body, chat=False)
    call = parse_call(body, route=RESPONSES_ROUTE, texts=(text,), ask=ask, caller=caller, endpoints=endpoints)
    echo = {"tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
            "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
            "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}}
    return ResponseCall(call=call, echo=echo)


# --- errors inside a stream --------------------------------------------------------------------------

def stream_error(error: ServiceError, *, responses: bool = False, sequence_number: int = 0) -> bytes:
    """An error after the stream opened (its status is already 200): the event the SDK raises on."""
    detail = {"message": error.message, "type": error.kind.error_type("openai"), "param": error.field,
              "code": error.kind.provider_code}
    if responses:
        return sse({"type": "error", "sequence_number": sequence_number, "code": detail["code"],
                    "message": error.message, "param": error.field, "error": detail}, event="error")
    return sse({"error": detail})


def _ids(recorded: Recorded, count: int) -> list[str | None]:
    ids = list(recorded.inference_ids)
    return ids if len(ids) == count else [None] * count
