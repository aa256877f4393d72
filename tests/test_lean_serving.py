"""A converted bundle served with no PyTorch, transformers or gliner2 in the serving process.

``gliner2-convert`` turns the tiny checkpoint into a bundle; ``gliner2-serve`` then
runs from the lean environment (``.venv-lean``: the service installed without
the ``convert`` extra, as the serving image installs it) with an import guard
(tests/import_guard/sitecustomize.py) that fails, and records, any import of
those modules. Every route and task is answered, equal to the gliner2 library
(PyTorch, in this process) on the same checkpoint; the guard's record stays
empty and the process maps no PyTorch library.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from conftest import SEED_TEXT, start_stack, stop_stack
from gliner_client import GlinerClient, build_schema
from gliner_server.envoy import free_port
from test_rest_api import same_json

ROOT = Path(__file__).resolve().parents[1]
LEAN_PYTHON = ROOT / ".venv-lean" / "bin" / "python"
FORBIDDEN = ("torch", "transformers", "gliner2", "safetensors", "peft", "nncf")
KEY = "lean-key-0123456789"
TEXT = "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday."
THRESHOLD = 0.2


def lean_env(log: Path) -> dict:
    return {"PYTHONPATH": str(ROOT / "tests" / "import_guard"), "GLINER2_FORBIDDEN_IMPORTS": ",".join(FORBIDDEN),
            "GLINER2_IMPORT_LOG": str(log)}


@pytest.fixture(scope="module")
def bundle(span_checkpoint, work_dir):
    out = work_dir / "lean-bundle"
    command = [str(Path(sys.executable).parent / "gliner2-convert"), str(span_checkpoint), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out.resolve())
    return out


@pytest.fixture(scope="module")
def lean_stack(bundle, work_dir):
    assert LEAN_PYTHON.is_file(), "scripts/install.sh creates .venv-lean"
    found = subprocess.run([str(LEAN_PYTHON), "-c", "import importlib.util as u; print([m for m in "
                            f"{list(FORBIDDEN)!r} if u.find_spec(m)])"], capture_output=True, text=True)
    assert found.stdout.strip() == "[]", f"the lean environment has {found.stdout}"
    log = work_dir / "lean-imports.log"
    grpc_port = free_port()
    stack = start_stack(bundle, work_dir / "lean-cache", work_dir / "lean-stack", "--api-key", KEY,
                        "--grpc-port", str(grpc_port), python=str(LEAN_PYTHON), env=lean_env(log))
    stack.grpc_address, stack.import_log, stack.model_id = f"127.0.0.1:{grpc_port}", log, str(bundle)
    yield stack
    assert stop_stack(stack) == 0, stack.log()
    assert not log.exists() or log.read_text() == "", log.read_text()


def post(stack, path, body):
    response = requests.post(stack.base_url + path, json=body, headers={"X-API-Key": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_bundle_says_what_it_was_made_from(bundle, span_checkpoint):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "gliner2-openvino-bundle/1" and manifest["precision"] == "f32"
    assert manifest["source"]["model_id"] == str(span_checkpoint) and len(manifest["source"]["digest"]) == 32
    assert manifest["converter"]["gliner2"] == "2.1.0" and manifest["openvino"]
    for name in ("encoder.xml", "encoder.bin", "tokenizer.json", "processor.json", "heads.npz",
                 "heads/span_token_side.xml", "heads/classifier.xml", "heads/count_pred.xml"):
        entry = manifest["files"][name]
        data = (bundle / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_gliner2_route_every_task_equals_the_library(lean_stack, reference):
    labels = ["company", "person", "product", "location"]
    same_json(post(lean_stack, "/gliner-2", {"text": SEED_TEXT, "labels": labels, "threshold": THRESHOLD}),
              reference.extract_entities(SEED_TEXT, labels, threshold=THRESHOLD))
    tasks = {"sentiment": ["positive", "neutral", "negative"]}
    text = "This laptop has great performance but poor battery life."
    same_json(post(lean_stack, "/gliner-2", {"text": text, "labels": tasks}), reference.classify_text(text, tasks))
    schema = {"product": ["name::str::Product name", "storage::str::Storage capacity", "price::list"]}
    text = "iPhone 15 Pro Max with 256GB storage priced at $1199."
    same_json(post(lean_stack, "/gliner-2", {"task": "extract_json", "text": text, "schema": schema,
                                            "threshold": THRESHOLD}),
              reference.extract_json(text, schema, threshold=THRESHOLD))
    same_json(post(lean_stack, "/gliner-2", {"task": "schema", "text": TEXT, "threshold": THRESHOLD,
                                            "schema": {"relations": ["works_for", "located_in"]}}),
              reference.extract(TEXT, reference.create_schema().relations(["works_for", "located_in"]),
                                threshold=THRESHOLD))


def test_inference_route_with_every_task_and_flags(lean_stack, reference):
    body = post(lean_stack, "/inference", {
        "text": TEXT, "threshold": THRESHOLD, "include_confidence": True, "include_spans": True,
        "schema": {"entities": {"person": "A human being", "company": "A business"},
                   "classifications": [{"task": "tone", "labels": ["formal", "casual"]},
                                       {"task": "topics", "labels": ["tech", "travel"], "multi_label": True,
                                        "cls_threshold": 0.3}],
                   "structures": {"meeting": ["who::list::Participants", "where::str::City"]},
                   "relations": ["works_for", "located_in"]}})
    schema = (reference.create_schema().entities({"person": "A human being", "company": "A business"})
              .classification("tone", ["formal", "casual"])
              .classification("topics", ["tech", "travel"], multi_label=True, cls_threshold=0.3)
              .relations(["works_for", "located_in"]))
    schema.structure("meeting").field("who", dtype="list", description="Participants") \
        .field("where", dtype="str", description="City")
    expected = reference.extract(TEXT, schema, threshold=THRESHOLD, include_confidence=True, include_spans=True)
    assert set(body["result"]) == set(expected)
    for task in ("entities", "tone", "topics", "relation_extraction"):
        same_json(body["result"][task], expected[task])


def test_run_route_long_text_and_batches(lean_stack, reference):
    long_text = " ".join([TEXT] * 40)   # longer than the window: chunked and merged
    items = post(lean_stack, "/run", {"input": [
        {"text": SEED_TEXT, "parameters": {"entity_types": ["person", "company"], "threshold": THRESHOLD}},
        {"text": long_text, "parameters": {"entity_types": ["person", "location"], "threshold": THRESHOLD}}]})
    assert [item["status"] for item in items] == ["success", "success"], items
    # The server's default window (384 words, 64 overlapping); the chunks share one batch of at most 16.
    schema = reference.create_schema().entities(["person", "location"])
    [expected] = reference.batch_extract_long([long_text], schema, chunk_size=384, chunk_overlap=64, batch_size=16,
                                              threshold=THRESHOLD, include_confidence=True, include_spans=True)
    found = {(e["label"], e["start"], e["end"]) for e in items[1]["output"]["entities"]}
    assert found and found == {(label, s["start"], s["end"]) for label, spans in expected["entities"].items()
                               for s in spans}
    assert max(start for _, start, _ in found) > 384 * 5    # found past the first window


def test_sdks_and_grpc_clients_are_answered(lean_stack, reference):
    oai = openai.OpenAI(base_url=lean_stack.base_url + "/v1", api_key=KEY, max_retries=0)
    completion = oai.chat.completions.create(
        model=str(lean_stack.model_id), messages=[{"role": "user", "content": SEED_TEXT}],
        extra_body={"schema": {"entities": ["person", "company"]}, "threshold": THRESHOLD})
    same_json(json.loads(completion.choices[0].message.content),
              reference.extract(SEED_TEXT, reference.create_schema().entities(["person", "company"]),
                                threshold=THRESHOLD))
    claude = anthropic.Anthropic(base_url=lean_stack.base_url, api_key=KEY, max_retries=0)
    message = claude.messages.create(model=str(lean_stack.model_id), max_tokens=512,
                                     messages=[{"role": "user", "content": SEED_TEXT}],
                                     extra_body={"schema": {"entities": ["person"]}, "threshold": THRESHOLD})
    assert message.content[0].type == "text" and "entities" in json.loads(message.content[0].text)
    with GlinerClient(lean_stack.grpc_address, api_key=KEY) as client:
        result = client.extract(SEED_TEXT, build_schema(entities=["person", "company"]), threshold=THRESHOLD)
    assert result is not None
    models = requests.get(lean_stack.base_url + "/v1/models", headers={"X-API-Key": KEY}, timeout=30).json()
    assert str(lean_stack.model_id) in json.dumps(models)


def test_the_serving_process_maps_no_pytorch(lean_stack):
    post(lean_stack, "/gliner-2", {"text": SEED_TEXT, "labels": ["person"]})
    maps = Path(f"/proc/{lean_stack.process.pid}/maps").read_text()
    assert "libtorch" not in maps and "/torch/" not in maps
    assert "openvino" in maps and "tokenizers" in maps
    assert not lean_stack.import_log.exists() or lean_stack.import_log.read_text() == ""
    assert "training jobs need PyTorch and gliner2" in lean_stack.log()


def test_a_checkpoint_without_the_convert_extra_fails_fast_and_says_why(span_checkpoint, work_dir):
    """The lean environment serves bundles; a checkpoint directory needs converting, hence the convert extra."""
    port = free_port()
    done = subprocess.run(
        [str(LEAN_PYTHON), "-m", "gliner_server.cli", "--model", str(span_checkpoint), "--port", str(port),
         "--cache-dir", str(work_dir / "lean-empty-cache"), "--run-dir", str(work_dir / "lean-fail"),
         "--data-dir", str(work_dir / "lean-fail" / "data")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "convert extra" in output and "gliner2-convert" in output, output[-3000:]


def test_dataset_uploads_say_they_need_the_library(lean_stack):
    """Records are validated by the gliner2 library; a lean server refuses them plainly instead of storing them
    unchecked (or failing with a 500)."""
    response = requests.post(lean_stack.base_url + "/v1/datasets", headers={"X-API-Key": KEY}, timeout=30,
                             json={"name": "tickets", "records": [{"input": "Tim Cook leads Apple.",
                                                                   "output": {"entities": {"person": ["Tim Cook"]}}}]})
    assert response.status_code == 503, response.text
    assert "convert extra" in response.json()["error"]["message"]
