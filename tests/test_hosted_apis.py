"""POST /run, POST /inference, models by id and the inference history, through Envoy.

One stack runs with a configuration file: the test checkpoint as default model,
a fine-tuned checkpoint (``job_abc123``), a LoRA adapter over the default
(``job_lora1``), a /run endpoint with default parameters, and three named API
clients (one in privacy mode), history in SQLite.
"""
from __future__ import annotations

import json

import pytest
import requests
import yaml
from gliner2.training.data import TrainingDataset

from conftest import loaded, start_stack, stop_stack
from model_fixtures import build_fine_tuned_checkpoint, build_lora_adapter
from test_model_registry import library_adapted_model
from test_rest_api import same_json

ALICE, BOB, CAROL = "alice-key-123", "bob-key-456", "carol-key-789"
RUN_SEED = {"model_id": "fastino-pii-demo", "input": [{"text": "9 AM for a Sedan for Jamie Derran",
                                                       "parameters": {"entity_types": ["full_name", "car", "time"],
                                                                      "threshold": 0.3}}]}
INFERENCE_SEED = {"model_id": "job_abc123", "text": "Apple announced the MacBook Pro at WWDC in Cupertino.",
                  "schema": {"entities": ["organization", "product", "event", "location"]}, "threshold": 0.5}
RUN_ITEM_KEYS = {"input", "latency_ms", "message", "output", "status", "inference_id", "queue_ms"}


@pytest.fixture(scope="module")
def models(span_checkpoint, work_dir):
    return {"fine_tuned": build_fine_tuned_checkpoint(work_dir / "job_abc123", seed=7),
            "adapter": build_lora_adapter(span_checkpoint, work_dir / "job_lora1-adapter", seed=3)}


@pytest.fixture(scope="module")
def config_file(span_checkpoint, models, work_dir):
    config = {
        "models": [{"id": "job_abc123", "source": str(models["fine_tuned"]), "description": "fine-tuned"},
                   {"id": "job_lora1", "source": str(span_checkpoint), "adapter": str(models["adapter"])}],
        "max_loaded_models": 2,
        "endpoints": [{"id": "fastino-pii-demo", "model": str(span_checkpoint), "description": "PII demo",
                       "parameters": {"entity_types": ["full_name", "car", "time"], "threshold": 0.3}}],
        "api_keys": [{"name": "alice", "key": ALICE}, {"name": "bob", "key": BOB},
                     {"name": "carol", "key": CAROL, "privacy_mode": True}],
        "max_batch_inputs": 8,
    }
    path = work_dir / "service.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def api(span_checkpoint, cache_dir, work_dir, config_file):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "apis-stack", "--config", str(config_file))
    yield stack
    assert stop_stack(stack) == 0, stack.log()


def call(stack, path, body=None, key=ALICE, method="POST", **params):
    headers = {"X-API-Key": key} if key else {}
    return requests.request(method, stack.base_url + path, json=body, headers=headers, params=params, timeout=60)


def provider_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["detail"] == body["error"]["message"]
    return body["detail"]


# --- POST /run -------------------------------------------------------------------------------------

def test_run_seed_body(api, reference):
    response = call(api, "/run", RUN_SEED)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    item = body[0]
    text = RUN_SEED["input"][0]["text"]
    assert set(item) == RUN_ITEM_KEYS and item["status"] == "success" and item["input"] == text
    assert item["message"] == "Responses from endpoint." and item["latency_ms"] > 0
    entities = item["output"]["entities"]
    for entity in entities:
        assert set(entity) == {"start", "end", "label", "text", "score"}
        assert text[entity["start"]:entity["end"]] == entity["text"] and entity["label"] in ("full_name", "car", "time")
    want = reference.extract_entities(text, ["full_name", "car", "time"], threshold=0.3, include_confidence=True,
                                      include_spans=True)["entities"]
    # The library appends "." to unpunctuated text and may include it in a span; /run
    # offsets index the caller's text, so such spans end at len(text).
    assert sorted((e["label"], e["start"], e["end"]) for e in entities) == sorted(
        (label, m["start"], min(m["end"], len(text))) for label, ms in want.items() for m in ms
        if text[m["start"]:m["end"]].strip())
    assert entities == sorted(entities, key=lambda e: (e["start"], e["end"]))
    assert item["output"]["redacted_text"] == expected_redaction(text, entities)


def expected_redaction(text, entities):
    chosen = []
    for e in sorted(entities, key=lambda e: (-e["score"], e["start"])):
        if all(e["end"] <= c["start"] or e["start"] >= c["end"] for c in chosen):
            chosen.append(e)
    for e in sorted(chosen, key=lambda e: e["start"], reverse=True):
        text = text[:e["start"]] + f"<{e['label'].upper()}>" + text[e["end"]:]
    return text


def test_run_redaction_replaces_every_chosen_entity(api):
    item = call(api, "/run", {"model_id": "fastino-pii-demo", "input": [
        {"text": "Call Jamie Derran at 9 AM about the red Sedan.", "parameters": {"threshold": 0.05}}]}).json()[0]
    entities, redacted = item["output"]["entities"], item["output"]["redacted_text"]
    assert entities and redacted == expected_redaction(item["input"], entities) != item["input"]


def test_run_endpoint_defaults_and_overrides(api):
    defaults = call(api, "/run", {"model_id": "fastino-pii-demo", "input": [{"text": "Sedan at 9 AM for Jamie"}]}).json()[0]
    assert defaults["status"] == "success"
    assert {e["label"] for e in defaults["output"]["entities"]} <= {"full_name", "car", "time"}
    explicit = call(api, "/run", {"model_id": "fastino-pii-demo", "input": [
        {"text": "Sedan at 9 AM for Jamie", "parameters": {"entity_types": ["city"], "threshold": 0.05}}]}).json()[0]
    assert explicit["output"]["entities"] and {e["label"] for e in explicit["output"]["entities"]} == {"city"}
    higher = call(api, "/run", {"model_id": "fastino-pii-demo", "input": [
        {"text": "Sedan at 9 AM for Jamie", "parameters": {"threshold": 0.99}}]}).json()[0]
    assert len(higher["output"]["entities"]) <= len(defaults["output"]["entities"])


def test_run_classification_and_structures(api, reference):
    text = "iPhone 15 Pro Max with 256GB storage priced at $1199. Great phone."
    item = call(api, "/run", {"input": [{"text": text, "parameters": {
        "labels": ["positive", "negative"], "structures": {"product": ["name::str", "price::str", "features::list"]}}}]}
    ).json()[0]
    assert item["status"] == "success" and item["message"] == "Responses from model."
    # One pass over the combined schema, as the library's extract runs it.
    local = reference.create_schema().classification("classification", ["positive", "negative"])
    local.structure("product").field("name", dtype="str").field("price", dtype="str").field("features", dtype="list")
    want = reference.extract(text, local, include_confidence=True)
    assert item["output"]["classifications"]["classification"]["label"] == want["classification"]["label"]
    assert abs(item["output"]["classifications"]["classification"]["score"] - want["classification"]["confidence"]) < 1e-4
    plain = reference.extract(text, local)["product"]
    assert item["output"]["structures"]["product"] == plain and plain
    assert "entities" not in item["output"]


def test_run_per_item_errors(api):
    body = {"model_id": "fastino-pii-demo", "input": [
        {"text": "Jamie drives a Sedan"}, {"text": ""}, {"parameters": {}}, "not an object",
        {"text": "x", "parameters": {"entity_types": ["a"], "colour": "red"}}, {"text": "Sedan at 9"}]}
    items = call(api, "/run", body).json()
    assert [i["status"] for i in items] == ["success", "error", "error", "error", "error", "success"]
    for item in items[1:5]:
        assert item["message"] and item["output"] is None
    assert "colour" in items[4]["message"]


@pytest.mark.parametrize("body, fragment", [
    ({"model_id": "fastino-pii-demo"}, "Missing required field: input"),
    ({"model_id": "fastino-pii-demo", "input": {"text": "x"}}, "input must be"),
    ({"model_id": "fastino-pii-demo", "input": []}, "input must be"),
    ({"model_id": "fastino-pii-demo", "input": [{"text": "x"}] * 9}, "Too many inputs"),
])
def test_run_whole_request_errors(api, body, fragment):
    assert fragment in provider_error(call(api, "/run", body), 400, "INVALID_REQUEST")


# --- POST /inference -------------------------------------------------------------------------------

def test_inference_seed_body(api, models, cache_dir):
    response = call(api, "/inference", INFERENCE_SEED)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "model_id", "result", "latency_ms", "created_at", "queue_ms"}
    assert body["model_id"] == "job_abc123" and body["id"].startswith("inf_") and body["created_at"].endswith("Z")
    fine_tuned = loaded(models["fine_tuned"], "torch", cache_dir).model
    schema = fine_tuned.create_schema().entities(INFERENCE_SEED["schema"]["entities"])
    same_json(body["result"], fine_tuned.extract(INFERENCE_SEED["text"], schema, threshold=0.5))


def test_inference_combined_schema(api, reference):
    text = "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday."
    schema = {
        "entities": {"person": "A human being", "company": "A business"},
        "classifications": [{"task": "tone", "labels": ["formal", "casual"]},
                            {"task": "topics", "labels": ["tech", "travel"], "multi_label": True, "cls_threshold": 0.3}],
        "structures": {"meeting": ["who::list::Participants",
                                   {"name": "where", "dtype": "str", "description": "City"}]},
        "relations": [{"name": "works_for", "description": "employment"}, "located_in"],
    }
    body = call(api, "/inference", {"text": text, "schema": schema, "include_confidence": True}).json()
    local = (reference.create_schema().entities({"person": "A human being", "company": "A business"})
             .classification("tone", ["formal", "casual"])
             .classification("topics", ["tech", "travel"], multi_label=True, cls_threshold=0.3)
             .relations({"works_for": "employment", "located_in": {}}))
    local.structure("meeting").field("who", dtype="list", description="Participants").field(
        "where", dtype="str", description="City")
    same_json(body["result"], reference.extract(text, local, include_confidence=True))


@pytest.mark.parametrize("body, fragment", [
    ({"model_id": "Qwen/Qwen3-8B", "task": "generate", "messages": [{"role": "user", "content": "hi"}]}, "Decoder models"),
    ({"text": "x"}, "Missing required field: schema"),
    ({"schema": {"entities": ["a"]}}, "Missing required field: text"),
    ({"text": "x", "schema": {"entities": ["a"], "intents": []}}, "intents"),
    ({"text": "x", "schema": {"classifications": [{"task": "t", "labels": ["only"]}]}}, "labels"),
    ({"text": "x", "schema": {"entities": ["a"]}, "threshold": -1}, "threshold"),
])
def test_inference_errors(api, body, fragment):
    assert fragment in provider_error(call(api, "/inference", body), 400, "INVALID_REQUEST")


# --- models by id ----------------------------------------------------------------------------------

def test_lora_job_routes_to_the_adapter(api, span_checkpoint, models):
    text = INFERENCE_SEED["text"]
    body = call(api, "/inference", {**INFERENCE_SEED, "model_id": "job_lora1", "include_confidence": True}).json()
    assert body["model_id"] == "job_lora1"
    adapted = library_adapted_model(span_checkpoint, models["adapter"])
    schema = adapted.create_schema().entities(INFERENCE_SEED["schema"]["entities"])
    same_json(body["result"], adapted.extract(text, schema, include_confidence=True))
    base = call(api, "/inference", {**INFERENCE_SEED, "model_id": "", "include_confidence": True}).json()
    assert base["result"] != body["result"]


def test_every_route_accepts_model_id(api):
    body = {"text": "Apple makes the iPhone.", "labels": ["company"], "model_id": "job_abc123"}
    assert call(api, "/gliner-2", body).status_code == 200
    run = call(api, "/run", {"model_id": "job_abc123", "input": [{"text": "x y", "parameters": {"entity_types": ["a"]}}]})
    assert run.status_code == 200 and run.json()[0]["status"] == "success"


@pytest.mark.parametrize("path, body", [
    ("/gliner-2", {"text": "x", "labels": ["a"], "model_id": "job_missing"}),
    ("/inference", {"text": "x", "schema": {"entities": ["a"]}, "model_id": "job_missing"}),
    ("/run", {"model_id": "job_missing", "input": [{"text": "x", "parameters": {"entity_types": ["a"]}}]}),
])
def test_unknown_model_is_404(api, path, body):
    assert "job_missing" in provider_error(call(api, path, body), 404, "NOT_FOUND")


def test_list_models(api, span_checkpoint):
    body = call(api, "/v1/models", method="GET").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert {str(span_checkpoint), "job_abc123", "job_lora1", "fastino-pii-demo"} <= set(by_id)
    assert by_id[str(span_checkpoint)]["is_default"] and by_id[str(span_checkpoint)]["kind"] == "base"
    assert by_id["job_abc123"]["kind"] == "fine_tuned" and by_id["job_lora1"]["kind"] == "fine_tuned"
    assert by_id["fastino-pii-demo"]["kind"] == "endpoint"
    assert by_id["fastino-pii-demo"]["model_id"] == str(span_checkpoint)
    assert call(api, "/v1/models", method="GET", key=None).status_code == 401


# --- history ---------------------------------------------------------------------------------------

def _list(api, key=ALICE, **params):
    response = call(api, "/inferences", method="GET", key=key, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_route_is_recorded_and_scoped(api):
    project = "proj-recording"
    call(api, "/gliner-2", {"text": "Tim Cook leads Apple.", "labels": ["person"], "project_id": project})
    call(api, "/inference", {"text": "Tim Cook leads Apple.", "schema": {"entities": ["person"]}, "project_id": project})
    call(api, "/run", {"project_id": project, "input": [{"text": "Tim Cook", "parameters": {"entity_types": ["person"]}},
                                                        {"text": "Apple", "parameters": {"entity_types": ["company"]}}]})
    from gliner_client import GlinerClient, build_schema

    with GlinerClient(f"127.0.0.1:{api.port}", api_key=ALICE) as client:
        extracted = client.extract("Tim Cook leads Apple.", build_schema(entities=["person"]), project_id=project)
    page = _list(api, project_id=project)
    routes = [i["route"] for i in page["inferences"]]
    assert page["total"] == 5 and sorted(routes) == sorted(["/gliner-2", "/inference", "/run", "/run", "grpc:Extract"])
    assert page["inferences"][0]["id"] == extracted.inference_id  # newest first
    first = page["inferences"][-1]
    assert first["text"] == "Tim Cook leads Apple." and first["output"]["entities"] is not None
    assert first["schema"]["entities"][0]["name"] == "person"
    assert _list(api, key=BOB, project_id=project)["total"] == 0
    assert call(api, f"/inferences/{first['id']}", method="GET", key=BOB).status_code == 404
    assert call(api, f"/inferences/{first['id']}", method="GET").json()["id"] == first["id"]


def test_history_filters_and_pagination(api):
    project = "proj-pages"
    for i in range(5):
        call(api, "/gliner-2", {"text": f"Text number {i} about Paris.", "labels": ["city"], "project_id": project,
                                "training_job_id": "job_t1" if i % 2 else None})
    call(api, "/inference", {"text": "Other model.", "schema": {"entities": ["x"]}, "model_id": "job_abc123",
                             "project_id": project})
    everything = _list(api, project_id=project, limit=100)
    assert everything["total"] == 6
    created = [i["created_at"] for i in everything["inferences"]]
    assert created == sorted(created, reverse=True)
    pages = [_list(api, project_id=project, limit=2, offset=o) for o in (0, 2, 4)]
    assert [i["id"] for p in pages for i in p["inferences"]] == [i["id"] for i in everything["inferences"]]
    assert all(p["total"] == 6 and p["limit"] == 2 for p in pages)
    assert _list(api, project_id=project, model_id="job_abc123")["total"] == 1
    assert _list(api, project_id=project, task="inference")["total"] == 1
    assert _list(api, project_id=project, task="classify_text")["total"] == 0
    assert _list(api, project_id=project, training_job_id="job_t1")["total"] == 2
    assert provider_error(call(api, "/inferences", method="GET", limit=0), 400, "INVALID_REQUEST")
    assert provider_error(call(api, "/inferences", method="GET", colour="red"), 400, "INVALID_REQUEST")


def test_feedback(api):
    inference_id = call(api, "/inference", {"text": "Tim Cook leads Apple.", "schema": {"entities": ["person"]},
                                            "project_id": "proj-feedback"}).json()["id"]
    path = f"/inferences/{inference_id}/feedback"
    first = call(api, path, {"verdict": "correct"})
    assert first.status_code == 200 and first.json()["feedback"]["verdict"] == "correct"
    corrected = {"entities": {"person": ["Tim Cook"]}}
    second = call(api, path, {"verdict": "incorrect", "corrected_output": corrected}).json()
    assert second["feedback"]["corrected_output"] == corrected
    current = call(api, f"/inferences/{inference_id}", method="GET").json()["feedback"]
    assert current["verdict"] == "incorrect" and current["corrected_output"] == corrected
    provider_error(call(api, path, {"verdict": "incorrect"}), 400, "INVALID_REQUEST")
    provider_error(call(api, path, {"verdict": "maybe"}), 400, "INVALID_REQUEST")
    provider_error(call(api, path, {"verdict": "correct"}, key=BOB), 404, "NOT_FOUND")
    provider_error(call(api, "/inferences/inf_nope/feedback", {"verdict": "correct"}), 404, "NOT_FOUND")


def test_privacy_mode(api):
    call(api, "/gliner-2", {"text": "Secret patient Jane Roe.", "labels": ["person"], "project_id": "proj-private"},
         key=CAROL)
    call(api, "/gliner-2", {"text": "Another secret.", "labels": ["person"], "project_id": "proj-private",
                            "privacy_mode": True})
    for key in (CAROL, ALICE):
        [row] = _list(api, key=key, project_id="proj-private")["inferences"]
        assert row["privacy_mode"] is True and "text" not in row and "output" not in row
        assert row["model_id"] and row["latency_ms"] > 0 and row["route"] == "/gliner-2"


def test_export_loads_with_the_gliner2_loader(api, tmp_path):
    text = "Satya Nadella leads Microsoft."
    confirmed = call(api, "/inference", {"text": text, "schema": {"entities": ["person", "company"]}}, key=BOB).json()
    call(api, f"/inferences/{confirmed['id']}/feedback", {"verdict": "correct"}, key=BOB)
    wrong = call(api, "/inference", {"text": "Sundar Pichai runs Google.", "schema": {"entities": ["person", "company"]}},
                 key=BOB).json()
    fixed = {"entities": {"person": ["Sundar Pichai"], "company": ["Google"]}}
    call(api, f"/inferences/{wrong['id']}/feedback", {"verdict": "incorrect", "corrected_output": fixed}, key=BOB)
    response = call(api, "/v1/feedback:export", {}, key=BOB)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 2
    path = tmp_path / "feedback.jsonl"
    path.write_text(response.text)
    examples = TrainingDataset.load(str(path))
    by_text = {e.text: e for e in examples}
    assert set(by_text) == {text, "Sundar Pichai runs Google."}
    assert by_text["Sundar Pichai runs Google."].entities == fixed["entities"]
    assert by_text[text].entities == {k: list(v) for k, v in confirmed["result"]["entities"].items()}


def test_history_over_native_grpc(api):
    """The same history service over gRPC, through Envoy's port, scoped by the key."""
    import grpc
    from gliner_client.v1 import history_service_pb2 as pb
    from gliner_client.v1 import history_service_pb2_grpc as pb_grpc

    inference_id = call(api, "/inference", {"text": "Ada Lovelace wrote notes.", "schema": {"entities": ["person"]},
                                            "project_id": "proj-grpc"}).json()["id"]
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = pb_grpc.InferenceHistoryServiceStub(channel)
        alice = (("x-api-key", ALICE),)
        page = stub.ListInferences(pb.ListInferencesRequest(project_id="proj-grpc"), metadata=alice, timeout=30)
        assert page.total == 1 and page.inferences[0].id == inference_id
        assert page.inferences[0].text == "Ada Lovelace wrote notes." and page.inferences[0].HasField("created_at")
        saved = stub.SubmitFeedback(pb.SubmitFeedbackRequest(id=inference_id, verdict="correct"), metadata=alice,
                                    timeout=30)
        assert saved.feedback.verdict == "correct"
        assert stub.GetInference(pb.GetInferenceRequest(id=inference_id), metadata=alice,
                                 timeout=30).feedback.verdict == "correct"
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetInference(pb.GetInferenceRequest(id=inference_id), metadata=(("x-api-key", BOB),), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
