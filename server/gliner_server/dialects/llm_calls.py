"""What the OpenAI- and Anthropic-compatible routes share: the text, what drives the extraction, the answer text.

Those SDKs were written for text generation; here the "completion" is the
JSON of an extraction. Per call:

* **The text**: the last user message's content (a string, or its text parts
  joined by newlines); system messages and earlier turns are ignored. The
  text-completion route passes its prompts instead.
* **What to extract**, the first of: ``schema`` in the body (Pioneer's form,
  what an SDK sends as ``extra_body``; with ``threshold``,
  ``include_confidence``, ``include_spans``), a JSON Schema the SDK asks the
  answer to follow (structured outputs), a forced tool call's parameters, or
  the defaults of a configured endpoint named as ``model``. None → 400.
* **The answer text**: with ``schema`` (or an endpoint) the JSON of the
  library's formatted result, as ``/inference`` returns it as ``result``; with
  a JSON Schema, one object that validates against it (:mod:`.json_schema`).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..config import EndpointConfig
from ..core.engine import ExtractionRequest, OutputOptions
from ..core.recording import ANONYMOUS, Caller, Provenance
from ..errors import ServiceError, shown
from . import body as fields
from .inference_api import pioneer_schema
from .json_schema import JsonSchemaPlan, plan_from_json_schema
from .run_api import parameters_schema

NOT_GENERATION = ("This service runs GLiNER2 extraction models, not text generation: say what to extract with "
                  '"schema" in the body (Pioneer\'s form, e.g. {"entities": ["person", "company"]}; the SDKs send '
                  "it as extra_body), a JSON Schema response format, or a forced tool call")
TEXT_PARTS = ("text", "input_text")
EXTRA_PROPERTIES = {   # what the SDKs send as extra_body, for the OpenAPI description
    "schema": {"type": "object", "description": "Pioneer's schema: entities, classifications, structures, relations"},
    **fields.OUTPUT_PROPERTIES,
    **fields.PROVENANCE_PROPERTIES,
}


@dataclass(frozen=True)
class JsonSchemaAsk:
    """A JSON Schema the caller wants the answer to follow: a response format or a forced tool's parameters."""

    name: str
    schema: Any
    where: str                      # its place in the body, for errors
    tool: bool = False              # a forced tool call (the answer is its arguments)


@dataclass(frozen=True)
class Driver:
    """What drives the extraction, and how its result becomes the answer."""

    kind: str                       # "schema", "endpoint", "json_schema" or "tool"
    plan: JsonSchemaPlan | None = None
    tool_name: str | None = None

    def content(self, result: Any) -> Any:
        return self.plan.assemble(result) if self.plan is not None else result

    def text(self, result: Any) -> str:
        return json.dumps(self.content(result), ensure_ascii=False)


@dataclass(frozen=True)
class LlmCall:
    """One call of an LLM-SDK route, translated for the core."""

    request: ExtractionRequest
    provenance: Provenance
    driver: Driver
    model: str                      # as the caller named it (echoed back)
    stream: bool
    include_usage: bool = False     # OpenAI stream_options.include_usage
    created: int = 0

    def texts(self, results: list[Any]) -> list[str]:
        return [self.driver.text(r) for r in results]


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def model_of(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ServiceError.invalid("model is required: a model id, a fine-tuned job id or an endpoint id "
                                   "(GET /v1/models lists them)", field="model")
    return model


def content_text(content: Any, where: str) -> str:
    """A message's text: the string, or the text parts of a content list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content
                 if isinstance(part, dict) and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str)]
        if texts:
            return "\n".join(texts)
        raise ServiceError.invalid(f"{where} has no text part: only text is analysed here", field=where.split("[")[0])
    raise ServiceError.invalid(f"{where} must be a string or a list of content parts", field=where.split("[")[0])


def last_user_text(messages: Any, where: str = "messages") -> str:
    """The content of the last message whose role is ``user``."""
    if not isinstance(messages, list) or not messages:
        raise ServiceError.invalid(f"{where} must be a non-empty list of messages", field=where)
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"), f"{where}[{index}].content")
    raise ServiceError.invalid(f"{where} has no user message: the last user message is the text analysed",
                               field=where)


def forced_tool(tools: Any, choice: Any, *, where: str, named: str | None, any_choice: bool
                ) -> tuple[int, dict] | None:
    """The (index, tool) a tool choice forces, or None when it forces none.

    ``named`` is the tool name the choice gives; ``any_choice`` a choice that
    forces some tool (OpenAI "required", Anthropic {"type": "any"}), which
    decides only when there is exactly one tool.
    """
    if named is None and not any_choice:
        return None
    if not isinstance(tools, list) or not tools:
        raise ServiceError.invalid(f"tool_choice forces a tool call but {where} lists no tools", field="tool_choice")
    if named is None:
        if len(tools) != 1:
            raise ServiceError.invalid(f"tool_choice forces some tool of {len(tools)}: name the one to call",
                                       field="tool_choice")
        return 0, tools[0]
    for index, tool in enumerate(tools):
        if isinstance(tool, dict) and tool_name(tool) == named:
            return index, tool
    raise ServiceError.invalid(f"tool_choice names {shown(named)}, which {where} does not define",
                               field="tool_choice")


def tool_name(tool: dict) -> Any:
    function = tool.get("function")
    return function.get("name") if isinstance(function, dict) else tool.get("name")


def parse_call(body: dict, *, route: str, texts: tuple[str, ...], ask: JsonSchemaAsk | None,
               caller: Caller = ANONYMOUS, endpoints: dict[str, EndpointConfig] | None = None,
               include_usage: bool = False) -> LlmCall:
    """The core request for an LLM-SDK body whose text(s) and JSON Schema ask the dialect has found."""
    if body.get("task") == "generate":
        raise ServiceError.invalid('Decoder models ("task": "generate") are not served here: this service runs '
                                   "GLiNER2 encoder models; send a schema instead", field="task")
    model = model_of(body)
    endpoint = (endpoints or {}).get(model)
    model_id = endpoint.model if endpoint else model
    output = OutputOptions()
    if body.get("schema") is not None:
        driver = Driver("schema")
        schema = pioneer_schema(body["schema"])
        output = OutputOptions(include_confidence=fields.optional_flag(body, "include_confidence"),
                               include_spans=fields.optional_flag(body, "include_spans"))
    elif ask is not None:
        plan = plan_from_json_schema(ask.schema, name=ask.name, where=ask.where)
        driver = Driver("tool" if ask.tool else "json_schema", plan=plan, tool_name=ask.name if ask.tool else None)
        schema = plan.schema
    elif endpoint is not None and endpoint.parameters:
        driver = Driver("endpoint")
        schema = parameters_schema(endpoint.parameters)
    else:
        raise ServiceError.invalid(NOT_GENERATION, field="schema")
    # an endpoint's threshold is its default too
    threshold = fields.threshold(body if body.get("threshold") is not None or endpoint is None
                                 else endpoint.parameters)
    request = ExtractionRequest(texts=texts, schema=schema, threshold=threshold, output=output, model_id=model_id)
    provenance = Provenance(
        route=route, task="inference" if driver.kind in ("schema", "endpoint") else "extract_json", caller=caller,
        project_id=fields.optional_str(body, "project_id"),
        training_job_id=fields.optional_str(body, "training_job_id"),
        privacy_mode=fields.optional_flag(body, "privacy_mode"),
        parameters={"model": model, "driver": driver.kind, "threshold": request.threshold,
                    "include_confidence": output.include_confidence, "include_spans": output.include_spans},
    )
    return LlmCall(request=request, provenance=provenance, driver=driver, model=model,
                   stream=fields.optional_flag(body, "stream"), include_usage=include_usage,
                   created=int(time.time()))


def pieces(text: str, size: int = 48) -> list[str]:
    """The answer text cut into stream deltas of at most ``size`` characters (one piece at least)."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event: an optional ``event:`` line and a ``data:`` line of JSON (or a literal string)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
