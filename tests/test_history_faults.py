"""A history database that stops answering or stops taking writes, under load, against the real stack.

The faults are real: a PostgreSQL server whose processes are paused (SIGSTOP,
as a hung host or a stuck storage layer), a SQLite file that becomes
unwritable (``chattr +i``, as a read-only remount), a SQLite file locked by
another process. In each case callers must get a fast 503 in the provider's
shape (never a hang, a 500 or an acknowledged inference that is not stored),
health must turn NOT_SERVING while it lasts and SERVING after, and the service
must recover without a restart.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from conftest import API_KEY, SEED_TEXT, start_stack, stop_stack
from helpers import HealthPoller, Load, fault_window, wait_for
from pg_cluster import PostgresCluster, server_bin_dir

from gliner_server.envoy import free_port

pytestmark = pytest.mark.timeout(300)

BODY = {"text": SEED_TEXT, "schema": {"entities": ["company", "person"]}}
TIMEOUT = 1.0     # --history-timeout
STALL = 2.0       # --stall-seconds


def fault_stack(checkpoint, cache_dir, run_dir, *extra):
    grpc_port = free_port()
    stack = start_stack(checkpoint, cache_dir, run_dir, "--api-key", API_KEY, "--grpc-port", str(grpc_port),
                        "--history-timeout", str(TIMEOUT), "--stall-seconds", str(STALL), *extra)
    stack.grpc_address = f"127.0.0.1:{grpc_port}"
    return stack


def stored_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT id FROM inferences")).scalars())
    finally:
        engine.dispose()


def run_fault(stack, start_fault, end_fault, *, fault_seconds: float = 6.0):
    """Steady load; the fault for ``fault_seconds``; then recovery. Returns (load, health, t_fault, t_end)."""
    with HealthPoller(stack.grpc_address) as health, \
            Load(stack.base_url, "/inference", BODY, key=API_KEY, clients=4, timeout=30) as load:
        assert wait_for(lambda: sum(a.status == 200 for a in load.snapshot()) >= 10, 30), load.snapshot()[-5:]
        fault_at, ended_at = fault_window(start_fault, end_fault, fault_seconds)
        # recovered: successes again, and SERVING again, without a restart (the poller keeps sampling until
        # both are seen: calls can succeed again a moment before the health check has caught up)
        assert wait_for(lambda: sum(a.status == 200 for a in load.between(ended_at + 0.1, 1e18)) >= 10, 30), \
            load.snapshot()[-5:]
        wait_for(lambda: health.first("SERVING", ended_at) is not None, 15)
    assert stack.process.poll() is None
    return load, health, fault_at, ended_at


def check_fault_answers(load, health, fault_at, ended_at):
    # Sent once the first stuck commit has timed out, and answered before the fault ended (a call sent near
    # its end may be retried by Envoy after it, and rightly succeed then).
    during = [a for a in load.between(fault_at + TIMEOUT + 0.5, ended_at) if a.ended < ended_at]
    failed = [a for a in during if a.status != 200]
    print(f"during the fault: {len(during)} answers, codes "
          f"{sorted({(a.status, a.code) for a in during}, key=str)}, slowest {max(a.seconds for a in during):.2f}s")
    assert during and len(failed) == len(during), during[:5]   # nothing is acknowledged meanwhile
    for answer in during:
        assert answer.status == 503 and answer.code == "UNAVAILABLE", answer.body
        assert answer.body["error"]["message"] == answer.body["detail"] and answer.body["detail"]
        assert answer.seconds < TIMEOUT + 1.5, answer      # fast: never the route timeout, never a hang
    statuses = health.statuses(fault_at, ended_at)
    assert "NOT_SERVING" in statuses, statuses             # balancers route around it
    not_serving_at = health.first("NOT_SERVING", fault_at)
    assert not_serving_at - fault_at < STALL + 2.0, not_serving_at - fault_at
    back = health.first("SERVING", ended_at)
    assert back is not None and back - ended_at < 10, health.statuses(ended_at)
    print(f"health: NOT_SERVING {not_serving_at - fault_at:.1f}s after the fault began, "
          f"SERVING {back - ended_at:.1f}s after it ended")


def check_acknowledged_are_stored(load, url):
    acknowledged = {a.body["id"] for a in load.snapshot() if a.status == 200}
    missing = acknowledged - stored_ids(url)
    assert acknowledged and not missing, sorted(missing)[:5]


@pytest.fixture(scope="module")
def pg():
    if server_bin_dir() is None:
        pytest.fail("PostgreSQL server binaries not installed: run scripts/install.sh as root")
    with PostgresCluster() as cluster:
        yield cluster


def test_a_paused_postgresql_fails_calls_fast_flips_health_and_recovers(pg, span_checkpoint, cache_dir, work_dir):
    url = pg.create_database("paused")
    stack = fault_stack(span_checkpoint, cache_dir, work_dir / "pg-pause", "--database-url", url)
    paused: list[int] = []
    try:
        with HealthPoller(stack.grpc_address, service="liveness") as liveness:
            load, health, fault_at, ended_at = run_fault(stack, lambda: paused.extend(pg.pause()),
                                                         lambda: pg.resume(paused))
        check_fault_answers(load, health, fault_at, ended_at)
        check_acknowledged_are_stored(load, url)
        # readiness went off, liveness never did: an orchestrator routes around it and does not restart it
        assert set(liveness.statuses(fault_at, ended_at)) == {"SERVING"}, liveness.statuses(fault_at, ended_at)
    finally:
        pg.resume(paused)
        assert stop_stack(stack) == 0, stack.log()
    assert "history commit has been running" in stack.log_path.read_text()


def immutable(paths, on: bool):
    for path in paths:
        if path.exists():
            done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, f"chattr failed (needs root and CAP_LINUX_IMMUTABLE): {done.stderr}"


def test_a_history_file_that_stops_being_writable_fails_calls_fast_and_recovers(span_checkpoint, cache_dir,
                                                                               work_dir):
    run_dir = work_dir / "sqlite-readonly"
    stack = fault_stack(span_checkpoint, cache_dir, run_dir)
    database = run_dir / "data" / "history.db"
    # The file and its write-ahead log (not the -shm index, which SQLite maps into memory).
    files = [database, database.with_name("history.db-wal")]
    try:
        load, health, fault_at, ended_at = run_fault(stack, lambda: immutable(files, True),
                                                     lambda: immutable(files, False))
        check_fault_answers(load, health, fault_at, ended_at)
        check_acknowledged_are_stored(load, f"sqlite:///{database}")
    finally:
        immutable(files, False)
        assert stop_stack(stack) == 0, stack.log()
    assert "history commits have been failing" in stack.log_path.read_text()


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


def test_a_locked_sqlite_file_fails_calls_fast_and_recovers(span_checkpoint, cache_dir, work_dir):
    run_dir = work_dir / "sqlite-locked"
    stack = fault_stack(span_checkpoint, cache_dir, run_dir)
    database = run_dir / "data" / "history.db"
    holder = None

    def lock():
        nonlocal holder
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(database)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"

    def unlock():
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)

    try:
        load, health, fault_at, ended_at = run_fault(stack, lock, unlock)
        check_fault_answers(load, health, fault_at, ended_at)
        check_acknowledged_are_stored(load, f"sqlite:///{database}")
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        assert stop_stack(stack) == 0, stack.log()


def test_history_calls_are_bounded_and_keep_health_checks_answered(pg, span_checkpoint, cache_dir, work_dir):
    """With the database paused, history calls fail within the timeout and at most half the reserved threads
    wait on it: health checks and model listings are answered throughout."""
    import concurrent.futures

    import requests

    url = pg.create_database("histcalls")
    stack = fault_stack(span_checkpoint, cache_dir, work_dir / "pg-history-calls", "--database-url", url)
    paused: list[int] = []
    headers = {"X-API-Key": API_KEY}
    try:
        assert requests.post(stack.base_url + "/inference", json=BODY, headers=headers, timeout=30).status_code == 200
        paused = pg.pause()
        with HealthPoller(stack.grpc_address, interval=0.05) as health, \
                concurrent.futures.ThreadPoolExecutor(16) as pool:
            started = time.monotonic()
            answers = list(pool.map(lambda _: requests.get(stack.base_url + "/inferences", headers=headers,
                                                           timeout=30), range(16)))
            elapsed = time.monotonic() - started
            models = requests.get(stack.base_url + "/v1/models", headers=headers, timeout=5)
        statuses = {a.status_code: a.json()["error"]["code"] for a in answers}
        print(f"16 history calls on a paused database: {statuses} in {elapsed:.1f}s")
        assert set(statuses) <= {503, 429} and statuses.get(503) == "UNAVAILABLE", statuses
        assert elapsed < TIMEOUT * 4 + 3, elapsed   # bounded: a few timeouts' worth, never a hang
        assert models.status_code == 200
        early = health.statuses(0, started + STALL)  # before the stall turns health off on purpose
        assert early and all(s in ("SERVING", "NOT_SERVING") for s in early), early   # always answered
    finally:
        pg.resume(paused)
        assert stop_stack(stack) == 0, stack.log()
