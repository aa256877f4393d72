"""Resident memory levels off under thousands of ordinary, varied requests (after warm-up, within 5 %).

The probe that found the problem: random texts of every length and, for half of
the requests, labels no other request used; RSS rose from ~0.9 to ~2.7 GB over
4 000 of them, because OpenVINO's CPU plugin kept kernels and buffers for every
input shape it saw (up to 5 000 per kind of layer). The runtime cache is
bounded now (``--runtime-cache-entries``); this test sends the same kind of
traffic to the real server and reads its RSS from /proc.
"""
from __future__ import annotations

import random
import string
import threading
from pathlib import Path

import pytest
import requests

from conftest import API_KEY, start_stack, stop_stack

pytestmark = pytest.mark.timeout(600)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def traffic(stack, count: int, seed: int, unique_labels: bool, clients: int = 4) -> None:
    lock, sent, failures = threading.Lock(), [0], []

    def client(n: int):
        rng = random.Random(seed * 1000 + n)
        session = requests.Session()
        session.headers["X-API-Key"] = API_KEY
        while True:
            with lock:
                if sent[0] >= count:
                    return
                sent[0] += 1
            words = [("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))))
                     for _ in range(rng.randint(3, 60))]
            labels = ([f"kind_{seed}_{rng.randint(0, 10**9)}" for _ in range(rng.randint(1, 6))] if unique_labels
                      else ["person", "company", "location", "product"])
            response = session.post(stack.base_url + "/gliner-2", json={"text": " ".join(words), "labels": labels},
                                    timeout=60)
            if response.status_code != 200:
                failures.append(response.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]


def test_resident_memory_levels_off_under_varied_traffic(span_checkpoint, cache_dir, work_dir):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "memory-stack", "--api-key", API_KEY)
    try:
        traffic(stack, 1000, seed=1, unique_labels=True)     # warm-up: the shapes ordinary traffic has
        warm = rss_mb(stack.process.pid)
        samples = []
        for round_ in range(4):                              # 2 000 more, new labels then fixed ones
            traffic(stack, 500, seed=10 + round_, unique_labels=round_ < 2)
            samples.append(rss_mb(stack.process.pid))
    finally:
        assert stop_stack(stack) == 0, stack.log()
    print(f"RSS after 1000 warm-up requests {warm:.0f} MiB; then every 500: {[round(s) for s in samples]} MiB")
    assert max(samples) <= warm * 1.05, (warm, samples)
