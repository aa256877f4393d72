"""Soak: hold the stack at saturation for a while; errors by kind, latency over time, memory growth.

Starts the real ``gliner2-serve`` (a small queue, so that load beyond capacity
is refused with 429 rather than queued) and drives it with more concurrent
clients than it can serve, mixing the routes people use: ``/gliner-2``
(entities, classification, a full schema), ``/inference``, ``/run``, typed
``/v1/extract``, native gRPC ``Extract``, and a share of bad requests (which
must be 4xx). Every ``--window`` seconds it records latency percentiles of the
successful calls, counts of every outcome, and the server's resident memory
(its process tree: the gRPC server and Envoy). At the end it prints the table,
the errors by kind and the memory growth from the first window after warm-up
to the last (target: only 429s beyond capacity, growth under 5 %).

    .venv/bin/python bench/soak.py                       # 10 minutes, the deberta-v3-base-shaped checkpoint
    .venv/bin/python bench/soak.py --minutes 1 --tiny    # a quick look
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KEY, LABELS, PARAGRAPH, ROOT, SEED, bench_checkpoint, cpu_busy_fraction, percentile, write_report

BODIES = [
    ("/gliner-2", {"text": SEED, "labels": LABELS}),
    ("/gliner-2", {"text": "The battery is great but the screen is dim.",
                   "labels": {"sentiment": ["positive", "negative", "neutral"]}}),
    ("/gliner-2", {"task": "schema", "text": PARAGRAPH.strip(),
                   "schema": {"entities": ["person", "company"], "relations": ["works_for"],
                              "classifications": {"tone": ["formal", "casual"]}}}),
    ("/inference", {"text": SEED, "schema": {"entities": ["company", "person"]}}),
    ("/run", {"input": [{"text": SEED, "parameters": {"entity_types": ["company", "person"]}}]}),
    ("/v1/extract", {"text": SEED, "schema": {"entities": [{"name": "company"}, {"name": "person"}]}}),
]
BAD = [
    ("/gliner-2", b'{"text": '),                                  # malformed JSON
    ("/gliner-2", {"labels": ["person"]}),                        # missing text
    ("/inference", {"text": SEED, "schema": {"nope": []}}),       # unknown schema key
]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return total


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.outcomes: collections.Counter = collections.Counter()

    def add(self, outcome: str, latency_ms: float | None = None):
        with self.lock:
            self.outcomes[outcome] += 1
            if latency_ms is not None:
                self.latencies.append(latency_ms)

    def take(self):
        with self.lock:
            taken = self.latencies, self.outcomes
            self.latencies, self.outcomes = [], collections.Counter()
            return taken


def client(base_url: str, grpc_port: int, recorder: Recorder, until: float, seed: int, bad_share: float):
    import grpc
    import requests

    from gliner_client import GlinerClient, build_schema
    from gliner_client.client import GlinerError

    rng = random.Random(seed)
    session = requests.Session()
    session.headers.update({"X-API-Key": KEY, "Content-Type": "application/json"})
    native = GlinerClient(f"127.0.0.1:{grpc_port}", api_key=KEY, timeout=60)
    schema = build_schema(entities=["company", "person"])
    while time.monotonic() < until:
        bad = rng.random() < bad_share
        started = time.perf_counter()
        if not bad and rng.random() < 0.15:
            try:
                native.extract(SEED, schema)
                recorder.add("grpc OK", (time.perf_counter() - started) * 1000)
            except GlinerError as error:
                recorder.add(f"grpc {error.code.name}")
            except grpc.RpcError as error:
                recorder.add(f"grpc {error.code().name}")
            continue
        path, body = rng.choice(BAD if bad else BODIES)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            response = session.post(base_url + path, data=data, timeout=60)
        except requests.RequestException as error:
            recorder.add(f"transport {type(error).__name__}")
            continue
        if response.status_code == 200:
            recorder.add("200", (time.perf_counter() - started) * 1000)
            continue
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "UNSHAPED"
        expected = "expected" if bad and 400 <= response.status_code < 500 else "unexpected"
        if response.status_code == 429 and response.headers.get("retry-after"):
            expected = "beyond capacity"
        recorder.add(f"{response.status_code} {code} ({expected})")
    native.close()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=48, help="concurrent clients (more than it can serve)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per row of the report")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before memory is first measured")
    parser.add_argument("--max-queued-texts", type=int, default=32, help="the server's queue bound")
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of deliberately bad requests")
    parser.add_argument("--tiny", action="store_true", help="the tiny checkpoint instead of deberta-v3-base's shape")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from conftest import start_stack, stop_stack  # the tests' way to run gliner2-serve (bench/common adds tests/)

    checkpoint = bench_checkpoint(args.cache, tiny=args.tiny)
    busy_before = cpu_busy_fraction()
    stack = start_stack(checkpoint, args.cache / "ov-cache", args.cache / "soak", "--api-key", KEY,
                        "--max-queued-texts", str(args.max_queued_texts), timeout=900)
    recorder = Recorder()
    began = time.monotonic()
    until = began + args.minutes * 60
    threads = [threading.Thread(target=client, args=(stack.base_url, stack.port, recorder, until, i, args.bad_share),
                                daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    rows, totals = [], collections.Counter()
    try:
        while time.monotonic() < until:
            time.sleep(min(args.window, max(0.0, until - time.monotonic())))
            latencies, outcomes = recorder.take()
            totals.update(outcomes)
            elapsed = time.monotonic() - began
            row = {"t_s": round(elapsed), "ok": outcomes["200"] + outcomes["grpc OK"],
                   "rps": round((outcomes["200"] + outcomes["grpc OK"]) / args.window, 2),
                   "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                   "p95_ms": round(percentile(latencies, 0.95), 1) if latencies else None,
                   "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
                   "outcomes": dict(outcomes), "rss_mb": round(rss_bytes(stack.process.pid) / 2**20, 1),
                   "after_warmup": elapsed >= args.warmup}
            rows.append(row)
            print(f"{row['t_s']:>6}s  ok {row['ok']:>6}  {row['rps']:>7} req/s  p50 {row['p50_ms']}  p95 "
                  f"{row['p95_ms']}  p99 {row['p99_ms']} ms  rss {row['rss_mb']} MB  "
                  f"{ {k: v for k, v in outcomes.items() if k not in ('200', 'grpc OK')} }", flush=True)
        for thread in threads:
            thread.join(timeout=120)
    finally:
        code = stop_stack(stack)
    measured = [r for r in rows if r["after_warmup"]] or rows
    first, last = measured[0]["rss_mb"], measured[-1]["rss_mb"]
    unexpected = {k: v for k, v in totals.items() if "unexpected" in k or k.startswith(("transport", "5"))
                  or ("grpc" in k and k not in ("grpc OK", "grpc RESOURCE_EXHAUSTED"))}
    report = {"checkpoint": str(checkpoint), "minutes": args.minutes, "clients": args.clients,
              "max_queued_texts": args.max_queued_texts, "rows": rows, "totals": dict(totals),
              "unexpected": unexpected, "rss_first_mb": first, "rss_last_mb": last,
              "memory_growth_pct": round(100 * (last - first) / first, 2) if first else None,
              "server_exit_code": code, "machine_busy_before": busy_before}
    print(f"\noutcomes over {args.minutes:g} min with {args.clients} clients: {dict(totals)}")
    print(f"unexpected outcomes (anything but successes, 429s beyond capacity and the bad requests' 4xx): "
          f"{unexpected or 'none'}")
    print(f"memory (server process tree, RSS): {first} MB after warm-up -> {last} MB at the end "
          f"({report['memory_growth_pct']:+.2f} %); server exit code {code}")
    write_report(report, args.out, "soak")
    return report


if __name__ == "__main__":
    main()
