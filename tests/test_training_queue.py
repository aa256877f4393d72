"""The training-job queue on a real PostgreSQL: workers never take the same job.

Two layers: many threads on two separate connection pools racing ``claim`` over
many requested jobs (every job taken exactly once), and two real
``gliner2-train-worker`` processes draining one queue of short jobs on the tiny
checkpoint (every job complete, each taken by exactly one worker).
"""
from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import Counter

import pytest

from pg_cluster import PostgresCluster, server_bin_dir

pytestmark = pytest.mark.skipif(server_bin_dir() is None, reason="PostgreSQL server binaries not installed")

RECORDS = [{"input": f"Ana Silva{i} works at Initech in Lima.",
            "output": {"entities": {"person": [f"Ana Silva{i}"], "company": ["Initech"], "location": ["Lima"]}}}
           for i in range(12)]


@pytest.fixture(scope="module")
def pg():
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


def stores(url: str, count: int):
    from gliner_server.history.store import HistoryStore
    from gliner_server.training.jobs import JobLimits, JobStore

    return [JobStore(HistoryStore.open(url, timeout_s=10), JobLimits(max_active_jobs=1000)) for _ in range(count)]


def queue_jobs(jobs, client: str, count: int, base: dict, **fields) -> list[str]:
    from gliner_server.history.datasets import DatasetStore
    from gliner_server.training.jobs import JobLimits, validate_request

    DatasetStore(jobs.store).create(client, "data", RECORDS)
    ids = []
    for _ in range(count):
        request = validate_request(base_model="tiny", base=base, dataset_names=["data"], model_name="",
                                   training_type=fields.get("training_type", "lora"),
                                   nr_epochs=fields.get("nr_epochs", 1), learning_rate=0.0, project_id=None,
                                   held_out_fraction=fields.get("held_out_fraction", 0.25), batch_size=4,
                                   limits=JobLimits())
        ids.append(jobs.create(client, request).id)
    return ids


def test_racing_claims_take_every_job_exactly_once(pg):
    url = pg.create_database(f"q_{uuid.uuid4().hex[:12]}")
    first, second = stores(url, 2)
    ids = queue_jobs(first, "alice", 40, {"model": "tiny", "source": "/nowhere", "adapter": None})
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(store, name):
        start.wait()
        while True:
            job = store.claim(name)
            if job is None:
                return
            with lock:
                taken.append((job.id, name))

    threads = [threading.Thread(target=claimer, args=(store, f"w{i}"))
               for i, store in enumerate([first, second] * 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    counts = Counter(job_id for job_id, _ in taken)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}, counts
    assert len({name for _, name in taken}) > 1, "one claimer took everything: no race happened"
    running = first.list("alice", status="running")
    assert len(running) == 40 and {job.worker for job in running} == {name for _, name in taken}
    for store in (first, second):
        store.store.close()


def test_two_workers_share_one_postgresql_queue(pg, span_checkpoint, tmp_path):
    url = pg.create_database(f"w_{uuid.uuid4().hex[:12]}")
    [jobs] = stores(url, 1)
    ids = queue_jobs(jobs, "alice", 4, {"model": "tiny", "source": str(span_checkpoint), "adapter": None})
    training_dir = tmp_path / "training"
    workers = [subprocess.Popen([sys.executable, "-m", "gliner_server.training.worker", "--database-url", url,
                                 "--training-dir", str(training_dir), "--threads", "1", "--once",
                                 "--poll-seconds", "0.2", "--heartbeat-seconds", "0.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    takers = {}
    for job_id in ids:
        job = jobs.get("alice", job_id)
        assert job.status == "complete", (job, outputs)
        _, lines = jobs.logs("alice", job_id)
        taken = [line.message for line in lines if line.message.startswith("taken by worker")]
        assert len(taken) == 1, taken
        takers[job_id] = taken[0]
        assert (training_dir / job_id / "model" / "adapter_config.json").is_file()
    print("jobs per worker:", Counter(takers.values()))
    jobs.store.close()
