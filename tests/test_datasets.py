"""Training datasets (POST/GET/DELETE /v1/datasets, /v1/datasets:from-feedback) through Envoy.

Records are gliner2 training JSONL records, validated by the library itself;
datasets are scoped to the API client and bounded by the configuration.
"""
from __future__ import annotations

import json

import pytest
import requests
import yaml

from conftest import start_stack, stop_stack

ALICE, BOB = "alice-datasets-key-1", "bob-datasets-key-22"
RECORDS = [
    {"input": "Tim Cook leads Apple in Cupertino.",
     "output": {"entities": {"person": ["Tim Cook"], "company": ["Apple"], "location": ["Cupertino"]}}},
    {"input": "The service was slow and the staff rude.",
     "output": {"classifications": [{"task": "sentiment", "labels": ["positive", "negative"],
                                     "true_label": ["negative"]}]}},
    {"input": "iPhone 15 Pro costs $999.",
     "output": {"json_structures": [{"product": {"name": "iPhone 15 Pro", "price": "$999"}}]}},
    {"input": "Satya Nadella works for Microsoft.",
     "output": {"relations": [{"works_for": {"head": "Satya Nadella", "tail": "Microsoft"}}]}},
]
LIMIT_RECORDS, LIMIT_DATASETS = 6, 3


@pytest.fixture(scope="module")
def api(span_checkpoint, cache_dir, work_dir):
    config = {"api_keys": [{"name": "alice", "key": ALICE}, {"name": "bob", "key": BOB}],
              "max_dataset_records": LIMIT_RECORDS, "max_datasets_per_client": LIMIT_DATASETS}
    path = work_dir / "datasets.yaml"
    path.write_text(yaml.safe_dump(config))
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "datasets-stack", "--config", str(path))
    yield stack
    assert stop_stack(stack) == 0, stack.log()


def call(stack, method, path, body=None, key=ALICE, **params):
    return requests.request(method, stack.base_url + path, json=body, params=params, timeout=30,
                            headers={"X-API-Key": key})


def error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["detail"] == body["error"]["message"], body
    return body["detail"]


def test_a_dataset_is_created_listed_read_and_deleted(api):
    created = call(api, "POST", "/v1/datasets", {"name": "first", "records": RECORDS, "description": "seed"})
    assert created.status_code == 200, created.text
    body = created.json()["dataset"]
    assert body["name"] == "first" and body["status"] == "ready" and body["source"] == "upload"
    assert body["record_count"] == 4 and int(body["size_bytes"]) > 100 and body["records"] == []
    assert body["task_counts"] == {"entities": 1, "classifications": 1, "json_structures": 1, "relations": 1}
    listed = call(api, "GET", "/v1/datasets").json()["datasets"]
    assert [d["name"] for d in listed] == ["first"] and listed[0]["records"] == []
    whole = call(api, "GET", "/v1/datasets/first", include_records="true").json()["dataset"]
    assert whole["records"] == RECORDS and whole["description"] == "seed"
    from gliner2.training.data import TrainingDataset   # what was stored loads in the library as it was sent

    assert len(TrainingDataset(whole["records"])) == 4
    assert call(api, "DELETE", "/v1/datasets/first").json() == {"name": "first", "deleted": True}
    error(call(api, "GET", "/v1/datasets/first"), 404, "NOT_FOUND")
    error(call(api, "DELETE", "/v1/datasets/first"), 404, "NOT_FOUND")


@pytest.mark.parametrize("record, fragment", [
    ({"input": "Tim Cook leads Apple.", "output": {"entities": {"person": ["Satya"]}}}, "'Satya'"),
    ({"input": "Tim", "output": {"classifications": [{"task": "t", "labels": ["a", "b"], "true_label": ["c"]}]}},
     "True label 'c'"),
    ({"input": "", "output": {"entities": {"person": []}}}, "Text cannot be empty"),
    ({"input": "x y", "output": {"relations": [{"works_for": {"head": "x", "tail": "q"}}]}}, "'q'"),
    ({"text": "no input key"}, '{"input": text'),
])
def test_a_bad_record_is_refused_naming_it_and_the_problem(api, record, fragment):
    message = error(call(api, "POST", "/v1/datasets", {"name": "bad", "records": [RECORDS[0], record]}), 400,
                    "INVALID_REQUEST")
    assert message.startswith("Invalid records[1]: ") and fragment in message, message
    error(call(api, "GET", "/v1/datasets/bad"), 404, "NOT_FOUND")   # nothing half-stored


def test_names_and_bounds(api):
    error(call(api, "POST", "/v1/datasets", {"name": "../etc", "records": RECORDS}), 400, "INVALID_REQUEST")
    error(call(api, "POST", "/v1/datasets", {"name": "empty", "records": []}), 400, "INVALID_REQUEST")
    assert "at most 6" in error(call(api, "POST", "/v1/datasets", {"name": "big", "records": RECORDS * 2}), 413,
                                "PAYLOAD_TOO_LARGE")
    for i in range(LIMIT_DATASETS):
        assert call(api, "POST", "/v1/datasets", {"name": f"n{i}", "records": RECORDS}).status_code == 200
    assert "exists already" in error(call(api, "POST", "/v1/datasets", {"name": "n0", "records": RECORDS}), 400,
                                     "INVALID_REQUEST")
    refused = call(api, "POST", "/v1/datasets", {"name": "one-more", "records": RECORDS})
    error(refused, 429, "RATE_LIMITED")
    assert refused.headers.get("retry-after")
    for i in range(LIMIT_DATASETS):
        call(api, "DELETE", f"/v1/datasets/n{i}")


def test_datasets_are_scoped_to_the_api_client(api):
    assert call(api, "POST", "/v1/datasets", {"name": "mine", "records": RECORDS}).status_code == 200
    try:
        error(call(api, "GET", "/v1/datasets/mine", key=BOB), 404, "NOT_FOUND")
        error(call(api, "DELETE", "/v1/datasets/mine", key=BOB), 404, "NOT_FOUND")
        assert call(api, "GET", "/v1/datasets", key=BOB).json()["datasets"] == []
        # the same name is another client's own
        assert call(api, "POST", "/v1/datasets", {"name": "mine", "records": RECORDS[:1]}, key=BOB).status_code == 200
        assert call(api, "GET", "/v1/datasets/mine").json()["dataset"]["record_count"] == 4
        error(call(api, "GET", "/v1/datasets", key="wrong"), 401, "UNAUTHORIZED")
    finally:
        call(api, "DELETE", "/v1/datasets/mine")
        call(api, "DELETE", "/v1/datasets/mine", key=BOB)


def test_a_dataset_from_feedback_holds_confirmed_and_corrected_outputs(api):
    project = "proj-datasets"
    text_a, text_b, text_c = "Tim Cook leads Apple.", "Satya Nadella leads Microsoft.", "Jeff Bezos founded Amazon."
    ids = [call(api, "POST", "/inference", {"text": t, "schema": {"entities": ["person", "company"]},
                                            "project_id": project}).json()["id"] for t in (text_a, text_b, text_c)]
    other = call(api, "POST", "/inference", {"text": "Elon Musk runs Tesla.", "schema": {"entities": ["person"]},
                                             "project_id": "elsewhere"}).json()["id"]
    corrected = {"entities": {"person": ["Satya Nadella"], "company": ["Microsoft"]}}
    assert call(api, "POST", f"/inferences/{ids[0]}/feedback", {"verdict": "correct"}).status_code == 200
    assert call(api, "POST", f"/inferences/{ids[1]}/feedback",
                {"verdict": "incorrect", "corrected_output": corrected}).status_code == 200
    assert call(api, "POST", f"/inferences/{other}/feedback", {"verdict": "correct"}).status_code == 200
    made = call(api, "POST", "/v1/datasets:from-feedback", {"name": "from-fb", "project_id": project})
    assert made.status_code == 200, made.text
    assert made.json()["dataset"]["source"] == "feedback" and made.json()["dataset"]["record_count"] == 2
    records = call(api, "GET", "/v1/datasets/from-fb", include_records="true").json()["dataset"]["records"]
    assert [r["input"] for r in records] == [text_a, text_b]                 # text_c has no feedback
    assert records[1]["output"]["entities"] == corrected["entities"]        # the correction, not the answer
    answered = call(api, "GET", f"/inferences/{ids[0]}").json()["output"]["entities"]
    assert records[0]["output"]["entities"] == {k: v for k, v in answered.items()}
    # the history's own export agrees
    exported = [json.loads(line) for line in call(api, "POST", "/v1/feedback:export", {}).text.splitlines()]
    assert records == [e for e in exported if e["input"] in (text_a, text_b)]
    later = call(api, "POST", "/v1/datasets:from-feedback", {"name": "none", "project_id": project,
                                                             "since": "2999-01-01T00:00:00Z"})
    assert "No feedback matches" in error(later, 400, "INVALID_REQUEST")
    assert call(api, "POST", "/v1/datasets:from-feedback", {"name": "bobs"}, key=BOB).status_code == 400
    call(api, "DELETE", "/v1/datasets/from-fb")


def test_native_grpc_clients_have_the_same_datasets(api):
    import grpc
    from gliner_client.v1 import training_service_pb2 as pb
    from gliner_client.v1 import training_service_pb2_grpc as pb_grpc
    from google.protobuf import json_format, struct_pb2

    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = pb_grpc.TrainingServiceStub(channel)
        request = pb.CreateDatasetRequest(name="typed", records=[
            json_format.ParseDict(r, struct_pb2.Struct()) for r in RECORDS[:2]])
        created = stub.CreateDataset(request, metadata=[("x-api-key", ALICE)], timeout=30)
        assert created.dataset.record_count == 2 and created.dataset.status == "ready"
        fetched = stub.GetDataset(pb.GetDatasetRequest(name="typed", include_records=True),
                                  metadata=[("x-api-key", ALICE)], timeout=30)
        assert [json_format.MessageToDict(r) for r in fetched.dataset.records] == RECORDS[:2]
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetDataset(pb.GetDatasetRequest(name="typed"), metadata=[("x-api-key", BOB)], timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        stub.DeleteDataset(pb.DeleteDatasetRequest(name="typed"), metadata=[("x-api-key", ALICE)], timeout=30)


def test_concurrent_creates_of_one_name_store_it_once(api):
    import concurrent.futures

    # As many at once as history calls are admitted (Admission.for_history: 4 of the default 64 workers);
    # a fifth would be refused with 429 "at capacity" before it reached the database.
    racers = 4
    with concurrent.futures.ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(lambda _: call(api, "POST", "/v1/datasets", {"name": "race", "records": RECORDS}),
                                range(racers)))
    try:
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [400] * (racers - 1), [a.text for a in answers]
        assert all("exists already" in a.json()["detail"] for a in answers if a.status_code == 400)
    finally:
        call(api, "DELETE", "/v1/datasets/race")
