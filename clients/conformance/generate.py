"""Regenerates ``vectors.json``: typed requests and the answers the Python path gives on the tiny checkpoint.

    .venv/bin/python clients/conformance/generate.py

It builds the tests' tiny checkpoint (``python -m gliner_server.random_checkpoint``,
seed 1), starts ``gliner2-serve --no-envoy`` on it, sends every case below
through the Python client's stubs, and writes each request with the answer
(or the error) it got. The Python, TypeScript and Go client tests then send
every vector to a live server on the same checkpoint and must get the same
answers (see README.md here for the comparison rules).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_KEY = "conformance-key-0123"
SEED = "Tim Cook, the chief executive of Apple, met Sundar Pichai of Google in Paris on Monday."
UNICODE = "Zoë Saldaña 🎬 met José Núñez in Málaga 🇪🇸 and Łódź on Friday."
SCHEMA_ENTITIES = {"entities": [{"name": "person"}, {"name": "company"}, {"name": "location"}]}

# (name, method, request as proto JSON, api key or None for the default)
CASES = [
    ("entities", "Extract", {"text": SEED, "schema": SCHEMA_ENTITIES, "threshold": 0.3}),
    ("entities_options", "Extract", {"text": SEED, "threshold": 0.2, "schema": {"entities": [
        {"name": "person", "description": "a human being", "threshold": 0.4},
        {"name": "company", "kind": "VALUE_KIND_STR"}, {"name": "day", "description": "a weekday"}]}}),
    ("classifications", "Extract", {"text": SEED, "schema": {"classifications": [
        {"name": "tone", "labels": ["formal", "casual"]},
        {"name": "topics", "labels": ["business", "travel", "sport"], "multi_label": True, "cls_threshold": 0.3,
         "label_descriptions": {"business": "companies and markets"}}]}}),
    ("structures", "Extract", {"text": SEED, "threshold": 0.2, "schema": {"structures": [
        {"name": "meeting", "fields": [
            {"name": "who", "kind": "VALUE_KIND_LIST", "description": "the people who met"},
            {"name": "where", "kind": "VALUE_KIND_STR"},
            {"name": "mood", "kind": "VALUE_KIND_STR", "choices": ["good", "bad"]}]}]}}),
    ("relations", "Extract", {"text": SEED, "threshold": 0.2, "schema": {"relations": [
        {"name": "works_for", "description": "employment"}, {"name": "located_in"}]}}),
    ("combined", "Extract", {"text": SEED, "threshold": 0.3, "schema": {
        **SCHEMA_ENTITIES, "classifications": [{"name": "tone", "labels": ["formal", "casual"]}],
        "structures": [{"name": "meeting", "fields": [{"name": "who", "kind": "VALUE_KIND_LIST"}]}],
        "relations": [{"name": "works_for"}]}}),
    ("unicode_offsets", "Extract", {"text": UNICODE, "threshold": 0.05, "schema": SCHEMA_ENTITIES}),
    ("batch", "BatchExtract", {"texts": [SEED, UNICODE, "Angela Merkel visited Washington."], "threshold": 0.3,
                               "schema": SCHEMA_ENTITIES}),
    ("error_empty_schema", "Extract", {"text": SEED, "schema": {}}),
    ("error_empty_text", "Extract", {"text": " ", "schema": SCHEMA_ENTITIES}),
    ("error_threshold", "Extract", {"text": SEED, "schema": SCHEMA_ENTITIES, "threshold": 1.5}),
    ("error_unknown_model", "Extract", {"text": SEED, "schema": SCHEMA_ENTITIES, "model_id": "job_missing"}),
    ("error_bad_key", "Extract", {"text": SEED, "schema": SCHEMA_ENTITIES}, "wrong-key"),
]
# What differs from run to run or machine to machine: never compared.
VOLATILE = ["model_id", "latency_ms", "queue_ms", "inference_id", "inference_ids"]
SCORE_TOLERANCE = 1e-4


def start_server(checkpoint: Path, cache_dir: Path, run_dir: Path, port: int) -> subprocess.Popen:
    """``gliner2-serve --no-envoy`` on ``checkpoint``; returns once it serves on 127.0.0.1:``port``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gliner_server.cli", "--model", str(checkpoint), "--no-envoy",
                                "--grpc-host", "127.0.0.1", "--grpc-port", str(port), "--api-key", API_KEY,
                                "--cache-dir", str(cache_dir), "--run-dir", str(run_dir),
                                "--data-dir", str(run_dir / "data")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while b"gliner2-serve: SERVING" not in (run_dir / "serve.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((run_dir / "serve.log").read_text()[-3000:])
        time.sleep(0.2)
    return process


def answer(stub, method: str, request_json: dict, key: str) -> dict:
    import grpc
    from gliner_client import GlinerError
    from gliner_client.v1 import gliner_service_pb2 as pb
    from google.protobuf import json_format

    request = json_format.ParseDict(request_json, getattr(pb, f"{method}Request")())
    try:
        response = getattr(stub, method)(request, metadata=[("x-api-key", key)], timeout=60)
    except grpc.RpcError as error:
        failed = GlinerError.from_rpc_error(error)
        return {"error": {"code": failed.code.name, "reason": failed.reason, "field": failed.field}}
    printed = json_format.MessageToDict(response, preserving_proto_field_name=True)
    return {"response": {k: v for k, v in printed.items() if k not in VOLATILE}}


def main() -> None:
    import grpc
    from gliner_client.v1 import gliner_service_pb2_grpc as pb_grpc

    from gliner_server.envoy import free_port
    from gliner_server.random_checkpoint import main as build_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        checkpoint = scratch / "tiny-span"
        build_checkpoint([str(checkpoint), "--seed", "1"])
        port = free_port()
        server = start_server(checkpoint, scratch / "cache", scratch / "run", port)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GlinerServiceStub(channel)
                vectors = [{"name": name, "method": method, "request": request,
                            **({"api_key": rest[0]} if rest else {}),
                            **answer(stub, method, request, rest[0] if rest else API_KEY)}
                           for name, method, request, *rest in CASES]
        finally:
            server.terminate()
            server.wait(30)
    document = {
        "about": "Typed requests and the answers of the tiny test checkpoint; regenerate with "
                 "`.venv/bin/python clients/conformance/generate.py`. See README.md.",
        "checkpoint": "python -m gliner_server.random_checkpoint DIR --seed 1",
        "api_key": API_KEY,
        "volatile": VOLATILE,
        "score_tolerance": SCORE_TOLERANCE,
        "vectors": vectors,
    }
    (HERE / "vectors.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(vectors)} vectors written to {HERE / 'vectors.json'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
