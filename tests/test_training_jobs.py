"""Training jobs end to end: the REST routes through Envoy, gliner2-train-worker, and the job served by its id.

The stack is the real ``gliner2-serve`` (which starts a worker beside itself)
on the tiny random checkpoint; the improvement test fine-tunes the MiniLM demo
base (random heads on a real encoder), which learns from a few dozen records.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import start_stack, stop_stack
from test_rest_api import same_json

ALICE, BOB = "alice-training-key-1", "bob-training-key-22"
JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
STALE_S = 4.0
LABELS = ["person", "company", "location"]

PEOPLE = ["John Smith", "Maria Lopez", "Wei Chen", "Anna Berg", "Omar Haddad", "Lena Fischer", "Raj Patel",
          "Sara Cohen", "Tom Baker", "Ines Duarte"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli",
             "Vandelay Imports", "Soylent", "Cyberdyne"]
PLACES = ["Paris", "Denver", "Lagos", "Osaka", "Lima", "Oslo", "Perth", "Cairo", "Quito", "Turin"]
TEMPLATES = ["{p} works at {c} in {l}.", "{c} hired {p} last year in {l}.", "In {l}, {p} joined {c}.",
             "{p} left {c} and moved to {l}.", "{c} opened an office in {l}, led by {p}."]


def people_records(count: int, seed: int) -> list[dict]:
    """Entity records in a narrow domain (a caller's own data, in miniature)."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        p, c, place = rng.choice(PEOPLE), rng.choice(COMPANIES), rng.choice(PLACES)
        records.append({"input": rng.choice(TEMPLATES).format(p=p, c=c, l=place),
                        "output": {"entities": {"person": [p], "company": [c], "location": [place]}}})
    return records


@pytest.fixture(scope="module")
def demo_base(work_dir):
    from gliner_server.demo_model import build_untrained

    return build_untrained(work_dir / "training-demo-base", seed=0)


@pytest.fixture(scope="module")
def api(span_checkpoint, demo_base, cache_dir, work_dir):
    config = {"default_model": "tiny",
              "models": [{"id": "tiny", "source": str(span_checkpoint)},
                         {"id": "demo-base", "source": str(demo_base)}],
              "api_keys": [{"name": "alice", "key": ALICE}, {"name": "bob", "key": BOB}],
              "max_active_training_jobs": 2, "training_stale_seconds": STALE_S}
    path = work_dir / "training.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = work_dir / "training-stack"
    stack = start_stack(None, cache_dir, run_dir, "--config", str(path), "--train-threads", "2")
    stack.training_dir = run_dir / "data" / "training"
    stack.data_dir = run_dir / "data"
    yield stack
    assert stop_stack(stack) == 0, stack.log()


def call(stack, method, path, body=None, key=ALICE, **params):
    return requests.request(method, stack.base_url + path, json=body, params=params, timeout=60,
                            headers={"X-API-Key": key})


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status, code) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["detail"] == body["error"]["message"], body
    return body["detail"]


def dataset(stack, name, records, key=ALICE):
    ok(call(stack, "POST", "/v1/datasets", {"name": name, "records": records}, key=key))


def create_job(stack, dataset_name, key=ALICE, **fields) -> dict:
    body = {"base_model": "tiny", "datasets": [{"name": dataset_name}], "nr_epochs": 1, **fields}
    return ok(call(stack, "POST", "/v1/training-jobs", body, key=key))


def wait_job(stack, job_id, until, timeout=180.0, key=ALICE) -> tuple[dict, list[dict]]:
    """Poll the job until ``until(job)``; returns it and every state seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        job = ok(call(stack, "GET", f"/v1/training-jobs/{job_id}", key=key))
        seen.append(job)
        if until(job):
            return job, seen
        assert time.monotonic() < deadline, f"job never got there: {job}\n{stack.log()}"
        time.sleep(0.3)


def finished(job) -> bool:
    return job["status"] in ("complete", "failed", "stopped")


def processes(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def worker_pid(stack) -> int:
    """The worker that gliner2-serve started (its child)."""
    def children(pid):
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    for pid in children(stack.process.pid):
        if "gliner_server.training.worker" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return pid
    raise AssertionError("no gliner2-train-worker child")


def training_child(worker: int) -> int | None:
    out = subprocess.run(["pgrep", "-P", str(worker)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    for pid in pids:
        try:
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
        except OSError:
            pass
    return None


# --- the lifecycle and serving ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def completed(api):
    """One complete job on the tiny checkpoint (LoRA, 2 epochs), and the states it went through."""
    dataset(api, "people", people_records(40, seed=1))
    created = create_job(api, "people", nr_epochs=2, model_name="people-v1", project_id="crm",
                         held_out_fraction=0.25)
    job, seen = wait_job(api, created["id"], finished)
    return created, job, seen


def test_a_job_goes_requested_running_complete_with_metrics_and_logs(api, completed):
    created, job, seen = completed
    assert JOB_ID.match(created["id"]) and created["status"] == "requested"
    assert created["base_model"] == "tiny" and created["datasets"] == [{"name": "people"}]
    assert created["training_type"] == "lora" and created["nr_epochs"] == 2 and created["model_name"] == "people-v1"
    assert job["status"] == "complete", job
    running = [s for s in seen if s["status"] == "running"]
    assert running and all(s["worker"] for s in running), seen
    assert job["progress"]["step"] == job["progress"]["total_steps"] > 0
    assert job["train_records"] == 30 and job["held_out_records"] == 10
    evaluation = job["evaluation"]
    assert evaluation["records"] == 10 and set(evaluation["labels"]) == set(LABELS)
    for side in ("base", "trained"):
        scores = evaluation[side]
        assert scores.get("true_positives", 0) + scores.get("false_negatives", 0) == 30   # 10 records x 3 labels
    assert job["f1"] == evaluation["trained"].get("f1", 0) and "precision" in job and "recall" in job
    logs = ok(call(api, "GET", f"/v1/training-jobs/{job['id']}/logs"))
    lines = [line["message"] for line in logs["logs"]]
    assert logs["status"] == "complete" and lines[-1] == "complete"
    assert any(line.startswith("taken by worker") for line in lines) and "stage: training" in lines
    assert any(re.match(r"step \d+/\d+ epoch", line) for line in lines)
    tail = ok(call(api, "GET", f"/v1/training-jobs/{job['id']}/logs", tail=2))["logs"]
    assert [line["message"] for line in tail] == lines[-2:]
    assert (api.training_dir / job["id"] / "model" / "adapter_config.json").is_file()
    assert not (api.training_dir / job["id"] / "work").exists()
    listed = ok(call(api, "GET", "/v1/training-jobs", status="complete", project_id="crm"))["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert ok(call(api, "GET", "/v1/training-jobs", project_id="elsewhere")).get("jobs", []) == []


def test_a_complete_job_is_listed_as_a_model(api, completed):
    _, job, _ = completed
    models = ok(call(api, "GET", "/v1/models"))["data"]
    [info] = [m for m in models if m["id"] == job["id"]]
    assert info["kind"] == "fine_tuned" and info["base_model"] == "tiny" and info["model_name"] == "people-v1"
    assert info["evaluation"]["records"] == 10 and info["owned_by"] == "alice"
    assert job["id"] not in [m["id"] for m in ok(call(api, "GET", "/v1/models", key=BOB))["data"]]


@pytest.fixture(scope="module")
def trained_reference(api, completed, span_checkpoint):
    """The job's model in the gliner2 library, as the worker left it (base + its LoRA adapter)."""
    from gliner_server.training.runner import load_library_model

    _, job, _ = completed
    return load_library_model(str(span_checkpoint), str(api.training_dir / job["id"] / "model"))


TEXT = "Maria Lopez works at Hooli in Oslo."


def test_the_job_is_served_by_its_id_on_every_route(api, completed, trained_reference, reference):
    import anthropic
    import openai
    from gliner_client import GlinerClient, build_schema

    _, job, _ = completed
    ref = trained_reference
    schema = ref.create_schema().entities(LABELS)
    want = ref.extract(TEXT, schema, threshold=0.3, include_confidence=True)
    base = reference.extract(TEXT, reference.create_schema().entities(LABELS), threshold=0.3,
                             include_confidence=True)
    assert jsonable_differs(want, base), "the trained model answers like its base: nothing to tell them apart"

    gliner2 = ok(call(api, "POST", "/gliner-2", {"text": TEXT, "labels": LABELS, "threshold": 0.3,
                                                 "include_confidence": True, "model_id": job["id"]}))
    same_json(gliner2, want)
    inference = ok(call(api, "POST", "/inference", {"model_id": job["id"], "text": TEXT, "threshold": 0.3,
                                                    "schema": {"entities": LABELS}, "include_confidence": True}))
    assert inference["model_id"] == job["id"]
    same_json(inference["result"], want)
    run = ok(call(api, "POST", "/run", {"model_id": job["id"], "input": [
        {"text": TEXT, "parameters": {"entity_types": LABELS, "threshold": 0.3}}]}))
    spans = ref.extract(TEXT, schema, threshold=0.3, include_spans=True)["entities"]
    assert sorted((e["label"], e["start"], e["end"]) for e in run[0]["output"]["entities"]) == sorted(
        (label, m["start"], min(m["end"], len(TEXT))) for label, ms in spans.items() for m in ms
        if TEXT[m["start"]:m["end"]].strip())
    with GlinerClient(f"127.0.0.1:{api.port}", api_key=ALICE) as client:
        typed = client.extract(TEXT, build_schema(entities=LABELS), threshold=0.3, model_id=job["id"])
    assert typed.model_id == job["id"]
    assert sorted((m.label, m.start, m.end) for m in typed.result.entities) == sorted(
        (label, m["start"], m["end"]) for label, ms in spans.items() for m in ms)
    oai = openai.OpenAI(base_url=api.base_url + "/v1", api_key=ALICE, max_retries=0)
    chat = oai.chat.completions.create(model=job["id"], messages=[{"role": "user", "content": TEXT}],
                                       extra_body={"schema": {"entities": LABELS}, "threshold": 0.3,
                                                   "include_confidence": True})
    same_json(json.loads(chat.choices[0].message.content), want)
    claude = anthropic.Anthropic(base_url=api.base_url, api_key=ALICE, max_retries=0)
    message = claude.messages.create(model=job["id"], max_tokens=64, messages=[{"role": "user", "content": TEXT}],
                                     extra_body={"schema": {"entities": LABELS}, "threshold": 0.3,
                                                 "include_confidence": True})
    same_json(json.loads(message.content[0].text), want)
    # Every one of those inferences is linked to the job in the history.
    records = ok(call(api, "GET", "/inferences", model_id=job["id"], limit=50))["inferences"]
    assert len(records) >= 6 and {r["training_job_id"] for r in records} == {job["id"]}, records


def jsonable_differs(a, b) -> bool:
    try:
        same_json(a, b)
    except AssertionError:
        return True
    return False


# --- scoping and bad input ---------------------------------------------------------------------------

def test_jobs_are_scoped_to_their_api_client(api, completed):
    _, job, _ = completed
    for method, path in (("GET", f"/v1/training-jobs/{job['id']}"), ("GET", f"/v1/training-jobs/{job['id']}/logs"),
                         ("POST", f"/v1/training-jobs/{job['id']}/stop")):
        error(call(api, method, path, {} if method == "POST" else None, key=BOB), 404, "NOT_FOUND")
    assert ok(call(api, "GET", "/v1/training-jobs", key=BOB)).get("jobs", []) == []
    served = call(api, "POST", "/gliner-2", {"text": TEXT, "labels": LABELS, "model_id": job["id"]}, key=BOB)
    assert "Unknown model_id" in error(served, 404, "NOT_FOUND")
    dataset(api, "bobs", people_records(10, seed=5), key=BOB)
    stolen_base = call(api, "POST", "/v1/training-jobs", {"base_model": job["id"], "datasets": [{"name": "bobs"}]},
                       key=BOB)
    error(stolen_base, 404, "NOT_FOUND")
    stolen_data = call(api, "POST", "/v1/training-jobs", {"base_model": "tiny", "datasets": [{"name": "people"}]},
                       key=BOB)
    assert "people" in error(stolen_data, 404, "NOT_FOUND")


@pytest.mark.parametrize("body, status, fragment", [
    ({"datasets": [{"name": "people"}]}, 400, "base_model is required"),
    ({"base_model": "nope", "datasets": [{"name": "people"}]}, 404, "Unknown base_model"),
    ({"base_model": "/etc", "datasets": [{"name": "people"}]}, 404, "Unknown base_model"),
    ({"base_model": "tiny"}, 400, "at least one dataset"),
    ({"base_model": "tiny", "datasets": [{"name": "missing"}]}, 404, "Dataset not found"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}, {"name": "people"}]}, 400, "named twice"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "training_type": "qlora"}, 400, "training_type"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "nr_epochs": 1000}, 400, "nr_epochs"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "learning_rate": 3}, 400, "learning_rate"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "held_out_fraction": 0.9}, 400, "held_out_fraction"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "batch_size": 10000}, 400, "batch_size"),
    ({"base_model": "tiny", "datasets": [{"name": "people"}], "nr_epochs": "many"}, 400, ""),
    ({"base_model": "tiny", "datasets": ["people"]}, 400, ""),
])
def test_bad_job_requests_get_clear_errors(api, completed, body, status, fragment):
    response = call(api, "POST", "/v1/training-jobs", body)
    assert fragment in error(response, status, "INVALID_REQUEST" if status == 400 else "NOT_FOUND")


def test_a_dataset_too_small_to_hold_out_from_is_refused(api):
    dataset(api, "one-record", people_records(1, seed=9))
    response = call(api, "POST", "/v1/training-jobs", {"base_model": "tiny", "datasets": [{"name": "one-record"}]})
    assert "too few" in error(response, 400, "INVALID_REQUEST")


def test_unknown_jobs_are_not_found(api):
    for job_id in ("job_" + "0" * 32, "job_abc", "../../etc/passwd"):
        error(call(api, "GET", f"/v1/training-jobs/{job_id}"), 404, "NOT_FOUND")
    error(call(api, "GET", "/v1/training-jobs", status="sleeping"), 400, "INVALID_REQUEST")


# --- stopping, limits, dead workers ----------------------------------------------------------------------

def test_stop_ends_a_running_job_within_seconds_and_a_requested_one_at_once(api, completed):
    dataset(api, "long", people_records(200, seed=2))
    long = create_job(api, "long", nr_epochs=100, batch_size=2)
    wait_job(api, long["id"], lambda j: j["status"] == "running" and j.get("progress", {}).get("step", 0) >= 2)
    queued = create_job(api, "long", nr_epochs=1)          # the one worker is busy: it waits
    assert queued["status"] == "requested"
    over = call(api, "POST", "/v1/training-jobs", {"base_model": "tiny", "datasets": [{"name": "long"}]})
    assert "the most allowed" in error(over, 429, "RATE_LIMITED")
    assert over.headers.get("retry-after")
    stopped = ok(call(api, "POST", f"/v1/training-jobs/{queued['id']}/stop", {}))
    assert stopped["status"] == "stopped" and stopped["stop_requested"]
    asked = time.monotonic()
    assert ok(call(api, "POST", f"/v1/training-jobs/{long['id']}/stop", {}))["stop_requested"]
    job, _ = wait_job(api, long["id"], finished, timeout=30)
    took = time.monotonic() - asked
    print(f"stop took effect in {took:.1f}s")
    assert job["status"] == "stopped" and job["error"] == "stopped on request" and took < 10
    assert not (api.training_dir / long["id"]).exists()
    again = call(api, "POST", f"/v1/training-jobs/{long['id']}/stop", {})
    assert "stopped already" in error(again, 400, "INVALID_REQUEST")
    lines = [line["message"] for line in ok(call(api, "GET", f"/v1/training-jobs/{long['id']}/logs"))["logs"]]
    assert "stop requested" in lines and lines[-1] == "stopped: stopped on request"


def test_a_killed_worker_fails_its_job_and_the_queue_goes_on(api, completed):
    dataset(api, "long2", people_records(200, seed=3))
    job = create_job(api, "long2", nr_epochs=100, batch_size=2)
    wait_job(api, job["id"], lambda j: j["status"] == "running" and j.get("progress", {}).get("step", 0) >= 1)
    worker = worker_pid(api)
    child = training_child(worker)
    assert child is not None
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    failed, _ = wait_job(api, job["id"], finished, timeout=STALE_S + 20)
    print(f"failed {time.monotonic() - killed:.1f}s after the kill: {failed['error']}")
    assert failed["status"] == "failed" and "no heartbeat" in failed["error"], failed
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the training process outlived its worker"
    # gliner2-serve restarts its worker; the next job runs.
    after = create_job(api, "people", nr_epochs=1)
    done, _ = wait_job(api, after["id"], finished)
    assert done["status"] == "complete", done
    assert worker_pid(api) != worker


def test_a_crashed_training_process_fails_its_job_with_the_reason(api):
    dataset(api, "long3", people_records(200, seed=6))
    job = create_job(api, "long3", nr_epochs=100, batch_size=2)
    wait_job(api, job["id"], lambda j: j["status"] == "running" and j.get("progress", {}).get("step", 0) >= 1)
    child = training_child(worker_pid(api))
    os.kill(child, signal.SIGKILL)
    failed, _ = wait_job(api, job["id"], finished, timeout=20)
    assert failed["status"] == "failed" and "died (signal SIGKILL)" in failed["error"], failed


def test_a_second_worker_on_one_sqlite_database_waits(api):
    process = subprocess.Popen([sys.executable, "-m", "gliner_server.training.worker", "--data-dir",
                                str(api.data_dir), "--training-dir", str(api.training_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)
        assert process.poll() is None
    finally:
        process.terminate()
        out = process.communicate(timeout=10)[0]
    assert "another worker runs the jobs of this SQLite database" in out and "WAITING" not in out, out


# --- training helps ----------------------------------------------------------------------------------------

def test_training_makes_a_model_measurably_better_on_its_held_out_split(api):
    """The MiniLM demo base (real encoder, random heads) fine-tuned with LoRA on a narrow domain."""
    dataset(api, "people-mini", people_records(200, seed=4))
    created = ok(call(api, "POST", "/v1/training-jobs", {
        "base_model": "demo-base", "datasets": [{"name": "people-mini"}], "nr_epochs": 10, "learning_rate": 2e-3,
        "batch_size": 4, "held_out_fraction": 0.2}))
    job, _ = wait_job(api, created["id"], finished, timeout=400)
    assert job["status"] == "complete", job
    base, trained = job["evaluation"]["base"], job["evaluation"]["trained"]
    print(f"held-out F1: base {base.get('f1', 0):.3f} -> trained {trained.get('f1', 0):.3f}")
    assert trained.get("f1", 0) >= base.get("f1", 0) + 0.3 and trained.get("f1", 0) >= 0.5, job["evaluation"]
