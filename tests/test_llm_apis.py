"""The OpenAI- and Anthropic-compatible routes, driven by the official SDKs through the real stack.

``gliner2-serve`` + Envoy on the tiny test checkpoint; the ``openai`` and
``anthropic`` packages pinned in pyproject.toml. Answers are compared with the
gliner2 library's own output on the same checkpoint (PyTorch, in this
process); structured outputs are checked against the caller's JSON Schema and
the SDKs' own ``.parse()``.
"""
from __future__ import annotations

import concurrent.futures
import json
import time
from typing import List, Literal, Optional

import anthropic
import jsonschema
import openai
import pytest
import requests
import yaml
from pydantic import BaseModel, Field

from conftest import start_stack, stop_stack
from gliner_server.envoy import free_port
from test_rest_api import same_json

KEY, LIMITED_KEY = "llm-key-0123456789", "llm-limited-key-987"
TEXT = "Tim Cook, the chief executive of Apple, met Sundar Pichai of Google in Paris on Monday."
LABELS = ["person", "company", "location"]
THRESHOLD = 0.1      # random weights: a low threshold gives something to compare
RATE = 40            # per-key requests per second (Envoy); LIMITED_KEY is the one that exceeds it


class Meeting(BaseModel):
    person: Optional[str] = Field(None, description="who met")
    company: Optional[str] = Field(None, description="a business")
    city: Optional[str] = None
    topics: List[str] = Field(default_factory=list, description="what was discussed")
    tone: Optional[Literal["formal", "casual"]] = None
    attendees: Optional[int] = Field(None, description="how many people")


@pytest.fixture(scope="module")
def llm_stack(span_checkpoint, cache_dir, work_dir):
    config = {
        "endpoints": [{"id": "people-finder", "model": str(span_checkpoint), "description": "people",
                       "parameters": {"entity_types": ["person"], "threshold": THRESHOLD}}],
        "api_keys": [{"name": "llm-user", "key": KEY}, {"name": "llm-limited", "key": LIMITED_KEY}],
    }
    path = work_dir / "llm-service.yaml"
    path.write_text(yaml.safe_dump(config))
    grpc_port = free_port()
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "llm-stack", "--config", str(path),
                        "--rate-limit", str(RATE), "--max-text-chars", "60000", "--max-request-bytes", "200000",
                        "--grpc-port", str(grpc_port))
    stack.grpc_address = f"127.0.0.1:{grpc_port}"
    stack.model = str(span_checkpoint)
    yield stack
    assert stop_stack(stack) == 0, stack.log()


@pytest.fixture(scope="module")
def oai(llm_stack):
    return openai.OpenAI(base_url=llm_stack.base_url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def claude(llm_stack):
    return anthropic.Anthropic(base_url=llm_stack.base_url, api_key=KEY, max_retries=0)


def library_entities(reference, text, labels=LABELS, threshold=THRESHOLD):
    return reference.extract(text, reference.create_schema().entities(labels), threshold=threshold)


def user(text):
    return [{"role": "system", "content": "You extract entities."},
            {"role": "user", "content": "an earlier turn, ignored"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": text}]


SCHEMA_BODY = {"schema": {"entities": LABELS}, "threshold": THRESHOLD}


# --- chat completions -------------------------------------------------------------------------------

def test_chat_completion_with_a_schema_answers_the_library_result(oai, llm_stack, reference):
    completion = oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), extra_body=SCHEMA_BODY)
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == llm_stack.model and isinstance(completion.created, int)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    same_json(json.loads(choice.message.content), library_entities(reference, TEXT))
    assert completion.usage.prompt_tokens > 10 and completion.usage.completion_tokens == 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens
    assert completion.model_extra["inference_id"].startswith("inf_")


def test_chat_content_parts_are_joined_and_confidence_is_passed_through(oai, llm_stack, reference):
    parts = [{"type": "text", "text": "Tim Cook runs Apple."}, {"type": "text", "text": "He lives in Palo Alto."}]
    completion = oai.chat.completions.create(
        model=llm_stack.model, messages=[{"role": "user", "content": parts}],
        extra_body={**SCHEMA_BODY, "include_confidence": True})
    want = reference.extract("Tim Cook runs Apple.\nHe lives in Palo Alto.",
                             reference.create_schema().entities(LABELS), threshold=THRESHOLD,
                             include_confidence=True)
    same_json(json.loads(completion.choices[0].message.content), want)


def test_chat_stream_carries_the_same_answer_with_usage(oai, llm_stack):
    whole = oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), extra_body=SCHEMA_BODY)
    chunks = list(oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), extra_body=SCHEMA_BODY,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_parse_with_a_pydantic_model_fills_it(oai, llm_stack):
    completion = oai.chat.completions.parse(model=llm_stack.model, messages=user(TEXT), response_format=Meeting,
                                            extra_body={"threshold": THRESHOLD})
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Meeting)
    answer = json.loads(completion.choices[0].message.content)
    jsonschema.validate(answer, openai.lib._pydantic.to_strict_json_schema(Meeting))
    assert list(answer) == list(Meeting.model_fields)      # every field, in the schema's order
    for value in (parsed.person, parsed.company, parsed.city):
        assert value is None or value in TEXT
    assert all(topic in TEXT for topic in parsed.topics)
    assert parsed.tone in (None, "formal", "casual")
    # the streaming helper accumulates the same object
    with oai.chat.completions.stream(model=llm_stack.model, messages=user(TEXT), response_format=Meeting,
                                     extra_body={"threshold": THRESHOLD}) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == parsed


def test_chat_forced_tool_call_gives_parsed_arguments(oai, llm_stack):
    tools = [openai.pydantic_function_tool(Meeting, name="record_meeting")]
    choice = {"type": "function", "function": {"name": "record_meeting"}}
    completion = oai.chat.completions.parse(model=llm_stack.model, messages=user(TEXT), tools=tools,
                                            tool_choice=choice, extra_body={"threshold": THRESHOLD})
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"       # what OpenAI answers to a call forced by name
    assert message.content is None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "record_meeting" and call.id.startswith("call_")
    assert isinstance(call.function.parsed_arguments, Meeting)
    chunks = list(oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), tools=tools,
                                              tool_choice=choice, stream=True, extra_body={"threshold": THRESHOLD}))
    arguments = "".join(d.function.arguments or "" for c in chunks for d in (c.choices[0].delta.tool_calls or []))
    assert json.loads(arguments) == json.loads(call.function.arguments)
    assert chunks[0].choices[0].delta.tool_calls[0].function.name == "record_meeting"


def test_an_endpoint_id_as_model_runs_its_defaults(oai, reference):
    completion = oai.chat.completions.create(model="people-finder", messages=user(TEXT))
    assert completion.model == "people-finder"
    same_json(json.loads(completion.choices[0].message.content), library_entities(reference, TEXT, ["person"]))


# --- text completions -------------------------------------------------------------------------------

PROMPTS = ["Satya Nadella leads Microsoft.", "Angela Merkel visited Washington.", "Jeff Bezos founded Amazon."]


def test_completions_answer_one_choice_per_prompt_in_order(oai, llm_stack, reference):
    completion = oai.completions.create(model=llm_stack.model, prompt=PROMPTS, extra_body=SCHEMA_BODY)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert [c.index for c in completion.choices] == [0, 1, 2]
    for choice, prompt in zip(completion.choices, PROMPTS):
        assert choice.finish_reason == "stop"
        same_json(json.loads(choice.text), library_entities(reference, prompt))
    ids = completion.model_extra["inference_ids"]
    assert len(set(ids)) == 3 and [c.model_extra["inference_id"] for c in completion.choices] == ids
    single = oai.completions.create(model=llm_stack.model, prompt=PROMPTS[1], extra_body=SCHEMA_BODY)
    assert single.choices[0].text == completion.choices[1].text
    texts = {i: "" for i in range(3)}
    chunks = list(oai.completions.create(model=llm_stack.model, prompt=PROMPTS, extra_body=SCHEMA_BODY,
                                         stream=True, stream_options={"include_usage": True}))
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert [texts[i] for i in range(3)] == [c.text for c in completion.choices]
    assert chunks[-1].usage.prompt_tokens == completion.usage.prompt_tokens


# --- responses --------------------------------------------------------------------------------------

def test_responses_with_a_schema_and_streamed(oai, llm_stack, reference):
    response = oai.responses.create(model=llm_stack.model, input=TEXT, extra_body=SCHEMA_BODY)
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    same_json(json.loads(response.output_text), library_entities(reference, TEXT))
    assert response.usage.input_tokens > 10 and response.usage.output_tokens == 0
    assert response.model_extra["inference_id"].startswith("inf_")
    events = list(oai.responses.create(model=llm_stack.model, input=[{"role": "user", "content": TEXT}],
                                       extra_body=SCHEMA_BODY, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == response.output_text
    assert events[-1].response.output_text == response.output_text


def test_responses_parse_and_forced_function(oai, llm_stack):
    parsed = oai.responses.parse(model=llm_stack.model, input=TEXT, text_format=Meeting,
                                 extra_body={"threshold": THRESHOLD})
    assert isinstance(parsed.output_parsed, Meeting)
    with oai.responses.stream(model=llm_stack.model, input=TEXT, text_format=Meeting,
                              extra_body={"threshold": THRESHOLD}) as stream:
        assert stream.get_final_response().output_parsed == parsed.output_parsed
    tool = {"type": "function", "name": "record_meeting", "parameters": Meeting.model_json_schema(), "strict": False}
    called = oai.responses.create(model=llm_stack.model, input=TEXT, tools=[tool],
                                  tool_choice={"type": "function", "name": "record_meeting"},
                                  extra_body={"threshold": THRESHOLD})
    [item] = called.output
    assert item.type == "function_call" and item.name == "record_meeting"
    Meeting.model_validate_json(item.arguments)


# --- anthropic messages -----------------------------------------------------------------------------

def test_messages_with_a_schema_answer_the_library_result_and_stream_it(claude, llm_stack, reference):
    message = claude.messages.create(model=llm_stack.model, max_tokens=1024, system="ignored",
                                     messages=user(TEXT)[1:], extra_body=SCHEMA_BODY)
    assert message.type == "message" and message.id.startswith("msg_") and message.stop_reason == "end_turn"
    same_json(json.loads(message.content[0].text), library_entities(reference, TEXT))
    assert message.usage.input_tokens > 10 and message.usage.output_tokens == 0
    assert message.model_extra["inference_id"].startswith("inf_")
    with claude.messages.stream(model=llm_stack.model, max_tokens=1024, messages=user(TEXT)[1:],
                                extra_body=SCHEMA_BODY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.input_tokens == message.usage.input_tokens


def test_messages_parse_and_forced_tool(claude, llm_stack):
    parsed = claude.messages.parse(model=llm_stack.model, max_tokens=1024, messages=user(TEXT)[1:],
                                   output_format=Meeting, extra_body={"threshold": THRESHOLD})
    assert isinstance(parsed.parsed_output, Meeting)
    tool = {"name": "record_meeting", "description": "Record a meeting", "input_schema": Meeting.model_json_schema()}
    message = claude.messages.create(model=llm_stack.model, max_tokens=1024, messages=user(TEXT)[1:], tools=[tool],
                                     tool_choice={"type": "tool", "name": "record_meeting"},
                                     extra_body={"threshold": THRESHOLD})
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == "record_meeting" and block.id.startswith("toolu_")
    jsonschema.validate(block.input, Meeting.model_json_schema())
    with claude.messages.stream(model=llm_stack.model, max_tokens=1024, messages=user(TEXT)[1:], tools=[tool],
                                tool_choice={"type": "tool", "name": "record_meeting"},
                                extra_body={"threshold": THRESHOLD}) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == block.input and final.stop_reason == "tool_use"


# --- models -----------------------------------------------------------------------------------------

def test_models_list_answers_both_sdks(oai, claude, llm_stack):
    openai_ids = [m.id for m in oai.models.list()]
    assert openai_ids == [llm_stack.model, "people-finder"]
    assert all(m.object == "model" and m.created > 1_700_000_000 for m in oai.models.list())
    page = claude.models.list()
    assert [m.id for m in page.data] == openai_ids and page.has_more is False
    first = page.data[0]
    assert first.type == "model" and first.display_name == llm_stack.model and first.created_at.year >= 2024
    assert [m.id for m in claude.models.list(limit=1)] == openai_ids      # auto-paging, one per page
    assert claude.models.list(limit=1).has_more is True
    old_style = anthropic.Anthropic(base_url=llm_stack.base_url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in old_style.models.list()] == openai_ids          # base_url ".../v1", as Pioneer says
    assert old_style.messages.create(model=llm_stack.model, max_tokens=10, messages=[{"role": "user", "content": TEXT}],
                                     extra_body=SCHEMA_BODY).content[0].text


# --- errors -----------------------------------------------------------------------------------------

def test_openai_errors_are_the_sdks_typed_exceptions(oai, llm_stack):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT))
    assert "not text generation" in caught.value.message and caught.value.type == "invalid_request_error"
    assert caught.value.code == "INVALID_REQUEST" and caught.value.param == "schema"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), extra_body={"schema": {"colours": 1}})
    assert "colours" in caught.value.message
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=llm_stack.base_url + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model=llm_stack.model, messages=user(TEXT), extra_body=SCHEMA_BODY)
    assert caught.value.type == "authentication_error"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="job_missing", messages=user(TEXT), extra_body=SCHEMA_BODY, stream=True)
    assert "job_missing" in caught.value.message      # refused before the stream opened: a real 404
    with pytest.raises(openai.APIStatusError) as caught:
        oai.completions.create(model=llm_stack.model, prompt="x" * 60_001, extra_body=SCHEMA_BODY)
    assert caught.value.status_code == 413
    deep = {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "object", "properties": {"c": {"type": "string"}}}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), response_format={
            "type": "json_schema", "json_schema": {"name": "deep", "schema": deep}})
    assert "response_format.json_schema.schema.properties.a.properties.b" in caught.value.message


def test_anthropic_errors_are_the_sdks_typed_exceptions(claude, llm_stack):
    def send(client=claude, **overrides):
        arguments = dict(model=llm_stack.model, max_tokens=10, messages=[{"role": "user", "content": TEXT}],
                         extra_body=SCHEMA_BODY)
        return client.messages.create(**{**arguments, **overrides})

    with pytest.raises(anthropic.BadRequestError) as caught:
        send(extra_body={})
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.AuthenticationError):
        send(anthropic.Anthropic(base_url=llm_stack.base_url, api_key="wrong", max_retries=0))
    with pytest.raises(anthropic.NotFoundError) as caught:
        send(model="job_missing")
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        send(model="job_missing", stream=True)
    with pytest.raises(anthropic.BadRequestError):
        send(tool_choice={"type": "tool", "name": "nope"}, tools=[], extra_body={})


def test_rate_limited_keys_get_the_sdks_rate_limit_errors(llm_stack):
    limited_openai = openai.OpenAI(base_url=llm_stack.base_url + "/v1", api_key=LIMITED_KEY, max_retries=0)
    limited_claude = anthropic.Anthropic(base_url=llm_stack.base_url, api_key=LIMITED_KEY, max_retries=0)
    headers = {"Authorization": f"Bearer {LIMITED_KEY}"}

    def limited(send, error_class):
        """The SDK's error once the key's bucket is spent (the bucket refills each second: a refill between
        spending it and the call lets that call through, so up to five tries)."""
        for _ in range(5):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: requests.get(llm_stack.base_url + "/v1/models", headers=headers,
                                                                timeout=10).status_code, range(2 * RATE)))
            assert set(statuses) <= {200, 429} and 429 in statuses
            try:
                send()
            except error_class as error:
                return error
        raise AssertionError(f"no {error_class.__name__} in five tries")

    error = limited(lambda: limited_openai.chat.completions.create(model="people-finder", messages=user(TEXT)),
                    openai.RateLimitError)
    assert error.response.headers["retry-after"] and error.type == "rate_limit_error"
    error = limited(lambda: limited_claude.messages.create(model="people-finder", max_tokens=10,
                                                           messages=[{"role": "user", "content": TEXT}]),
                    anthropic.RateLimitError)
    assert error.body["error"]["type"] == "rate_limit_error"


# --- the event stream on the wire -------------------------------------------------------------------

def read_events(response):
    """(arrival time, event name or None, data) per Server-Sent Event."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        line = line.decode()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line and data:
            events.append((time.monotonic(), name, "\n".join(data)))
            name, data = None, []
    return events


def post_stream(stack, path, body, **headers):
    return requests.post(stack.base_url + path, json=body, stream=True, timeout=120,
                         headers={"X-API-Key": KEY, **headers})


def test_raw_chat_stream_order_done_and_no_buffering(llm_stack):
    text = ("Tim Cook met Sundar Pichai in Paris. " * 400)[:14_000]     # a long text: many model passes
    started = time.monotonic()
    with post_stream(llm_stack, "/v1/chat/completions", {
            "model": llm_stack.model, "stream": True, "messages": [{"role": "user", "content": text}],
            **SCHEMA_BODY}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    assert events[-1][2] == "[DONE]" and all(name is None for _, name, _ in events)
    chunks = [json.loads(data) for _, _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    first, last = events[0][0] - started, events[-1][0] - started
    print(f"first event after {first:.3f}s, last after {last:.3f}s")
    # the opening chunk left Envoy while the model was still running: nothing buffered the stream
    assert last - first > 0.2 and first < last / 2, (first, last)


def test_raw_anthropic_and_responses_event_sequences(llm_stack):
    body = {"model": llm_stack.model, "stream": True, "max_tokens": 5,
            "messages": [{"role": "user", "content": TEXT}], **SCHEMA_BODY}
    with post_stream(llm_stack, "/v1/messages", body, **{"anthropic-version": "2023-06-01"}) as response:
        names = [name for _, name, _ in read_events(response)]
    deltas = names[2:-3]
    assert names[:2] == ["message_start", "content_block_start"] and deltas and set(deltas) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    body = {"model": llm_stack.model, "stream": True, "input": TEXT, **SCHEMA_BODY}
    with post_stream(llm_stack, "/v1/responses", body) as response:
        events = read_events(response)
    assert all(json.loads(data)["type"] == name for _, name, data in events)
    with post_stream(llm_stack, "/v1/messages", {**body, "model": "job_missing", "messages": body["input"]}) as bad:
        assert bad.status_code == 400 and bad.json()["type"] == "error"      # messages must be a list


# --- history ----------------------------------------------------------------------------------------

def test_a_call_through_the_openai_sdk_is_in_the_history_and_takes_feedback(oai, llm_stack):
    completion = oai.chat.completions.create(model=llm_stack.model, messages=user(TEXT), extra_body=SCHEMA_BODY)
    inference_id = completion.model_extra["inference_id"]
    headers = {"Authorization": f"Bearer {KEY}"}
    listed = requests.get(llm_stack.base_url + "/inferences", headers=headers, timeout=10,
                          params={"limit": 100}).json()
    [record] = [i for i in listed["inferences"] if i["id"] == inference_id]
    assert record["route"] == "/v1/chat/completions" and record["text"] == TEXT
    same_json(record["output"], json.loads(completion.choices[0].message.content))
    feedback = requests.post(llm_stack.base_url + f"/inferences/{inference_id}/feedback", headers=headers,
                             json={"verdict": "correct"}, timeout=10)
    assert feedback.status_code == 200, feedback.text
    stored = requests.get(llm_stack.base_url + f"/inferences/{inference_id}", headers=headers, timeout=10).json()
    assert stored["feedback"]["verdict"] == "correct"


# --- Envoy's own errors, native gRPC, failures after the stream opened -------------------------------

def test_envoys_own_errors_take_the_dialects_shape(llm_stack):
    headers = {"X-API-Key": KEY}
    wrong_method = requests.get(llm_stack.base_url + "/v1/chat/completions", headers=headers, timeout=10)
    assert wrong_method.status_code == 405
    error = wrong_method.json()["error"]
    assert error["type"] == "invalid_request_error" and "Method not allowed" in error["message"]
    too_large = requests.post(llm_stack.base_url + "/v1/messages", headers=headers, timeout=10,
                              json={"model": "x", "messages": [{"role": "user", "content": "x" * 250_000}]})
    assert too_large.status_code == 413
    body = too_large.json()
    assert body["type"] == "error" and body["error"]["type"] == "request_too_large", body
    # the hosted APIs' routes keep the provider's shape
    other = requests.get(llm_stack.base_url + "/inference", headers=headers, timeout=10).json()
    assert set(other) == {"detail", "error"} and set(other["error"]) == {"code", "message"}


def test_native_grpc_clients_get_the_same_stream(llm_stack):
    import grpc
    from gliner_client.v1 import gliner_service_pb2 as pb
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc
    from google.api import httpbody_pb2

    body = {"model": llm_stack.model, "stream": True, "max_tokens": 5, "messages": [{"role": "user", "content": TEXT}],
            **SCHEMA_BODY}
    with grpc.insecure_channel(llm_stack.grpc_address) as channel:
        stub = pb_grpc.GlinerServiceStub(channel)
        request = pb.CreateMessageRequest(body=httpbody_pb2.HttpBody(content_type="application/json",
                                                                     data=json.dumps(body).encode()))
        messages = list(stub.CreateMessage(request, metadata=[("x-api-key", KEY)], timeout=30))
        assert len(messages) > 2 and {m.content_type for m in messages} == {"text/event-stream"}
        assert messages[0].data.startswith(b"event: message_start\n")
        assert messages[-1].data.startswith(b"event: message_stop\n")
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.CreateMessage(request, metadata=[("x-api-key", "wrong")], timeout=30))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


class FailingAfterQueued:
    """A recording engine whose call is queued (the stream opens) and then fails, as a stalled history does."""

    def run(self, request, provenance, context):
        from gliner_server.errors import ErrorKind, ServiceError

        context.on_started()
        raise ServiceError(ErrorKind.UNAVAILABLE, "The inference history is not answering; retry")


def streamed_bytes(parse, body: dict) -> tuple[bytes, object]:
    from gliner_server.core.engine import CallContext
    from gliner_server.grpc_api.calls import RpcCall
    from gliner_server.grpc_api.llm_streams import LlmStreams

    streams = LlmStreams(FailingAfterQueued(), threads=1)
    call = RpcCall(method="test", request_id="r1", route="test")
    try:
        data = b"".join(m.data for m in streams.serve(parse(json.dumps(body).encode()), CallContext(), call))
    finally:
        streams.close()
    return data, call


def sdk_over(data: bytes, client_class, **options):
    import httpx2 as httpx   # what both SDKs are built on

    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=data))
    return client_class(base_url="http://test/v1" if client_class is openai.OpenAI else "http://test",
                        api_key="k", max_retries=0, http_client=httpx.Client(transport=transport), **options)


@pytest.mark.parametrize("route", ["chat", "responses", "messages"])
def test_a_failure_after_the_stream_opened_is_an_error_event_the_sdk_raises(route):
    from gliner_server.dialects import anthropic_api, openai_api

    messages = [{"role": "user", "content": TEXT}]
    body = {"model": "m", "stream": True, **SCHEMA_BODY}
    if route == "chat":
        data, call = streamed_bytes(openai_api.parse_chat, {**body, "messages": messages})
        with pytest.raises(openai.APIError, match="not answering"):
            list(sdk_over(data, openai.OpenAI).chat.completions.create(model="m", messages=messages, stream=True))
    elif route == "responses":
        data, call = streamed_bytes(openai_api.parse_response, {**body, "input": TEXT})
        with pytest.raises(openai.APIError, match="not answering"):
            list(sdk_over(data, openai.OpenAI).responses.create(model="m", input=TEXT, stream=True))
    else:
        data, call = streamed_bytes(anthropic_api.parse, {**body, "messages": messages})
        with pytest.raises(anthropic.APIStatusError, match="not answering"):
            list(sdk_over(data, anthropic.Anthropic).messages.create(model="m", max_tokens=5, messages=messages,
                                                                     stream=True))
    assert call.failed is not None and call.failed.kind.name == "UNAVAILABLE"   # logged and counted as failed
    assert b"inference_id" not in data      # nothing answered without its record
