"""The `gliner2-serve` and `gliner2-build-demo-model` commands as a user runs them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import SEED_TEXT, start_stack


@pytest.fixture(scope="module")
def demo_checkpoint(work_dir):
    target = work_dir / "demo-model"
    result = subprocess.run([sys.executable, "-m", "gliner_server.demo_model", "--untrained", str(target)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" in result.stdout and "UNTRAINED" in (target / "README.md").read_text()
    return target


def _pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def _envoy_pids(run_dir):
    out = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_demo_model_serves_and_sigterm_stops_everything(demo_checkpoint, cache_dir, work_dir, monkeypatch):
    """MiniLM demo checkpoint, keys from a file and the environment, then SIGTERM."""
    key_file = work_dir / "keys.txt"
    key_file.write_text("# one key per line\nfile-key-1\n")
    monkeypatch.setenv("GLINER2_API_KEYS", "env-key-1,env-key-2")
    run_dir = work_dir / "demo-stack"
    stack = start_stack(demo_checkpoint, cache_dir, run_dir, "--api-key-file", str(key_file))
    try:
        body = {"text": SEED_TEXT, "labels": ["company", "person"]}
        for key in ("file-key-1", "env-key-2"):
            response = requests.post(stack.base_url + "/gliner-2", json=body, headers={"X-API-Key": key}, timeout=30)
            assert response.status_code == 200 and set(response.json()) == {"entities"}
        assert requests.post(stack.base_url + "/gliner-2", json=body, timeout=30).status_code == 401
        envoys = _envoy_pids(run_dir)
        assert envoys, "Envoy should be running under the supervisor"
    finally:
        stack.process.send_signal(signal.SIGTERM)
        code = stack.process.wait(timeout=30)
    assert code == 0, stack.log()
    deadline = time.monotonic() + 10
    while _pids_alive(envoys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pids_alive(envoys), "Envoy outlived gliner2-serve"
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.base_url + "/healthz", timeout=2)


def test_unreachable_hub_fails_fast_with_guidance(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gliner_server.cli", "--model", "fastino/gliner2-base-v1",
                             "--port", "0", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert "fastino/gliner2-base-v1" in result.stderr and "--model /path/to/checkpoint" in result.stderr
    assert "gliner2-build-demo-model" in result.stderr


def test_missing_directory_fails_fast(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gliner_server.cli", "--model", str(tmp_path / "nope"),
                             "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No checkpoint directory" in result.stderr


def test_a_replica_failing_at_start_up_stops_the_others_with_the_reason(tmp_path):
    """--replicas 2 with a model that cannot load: the first replica fails before the second was started; the
    command says why and exits 1 (it used to crash on the replica it had not started)."""
    result = subprocess.run([sys.executable, "-m", "gliner_server.cli", "--model", str(tmp_path / "nope"),
                             "--replicas", "2", "--port", "0", "--cache-dir", str(tmp_path),
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "No checkpoint directory" in result.stderr and "replica 0 exited with 1 during start-up" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_during_a_long_model_load_stops_at_once(big_checkpoints, tmp_path):
    """SIGTERM while the model is still being converted (a fresh cache): the command stops within seconds,
    exits 0 and never says SERVING, instead of finishing the load and the warm-up first."""
    run_dir = tmp_path / "run"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gliner_server.cli", "--model", str(big_checkpoints[0]),
                                    "--port", "0", "--cache-dir", str(tmp_path / "fresh-cache"),
                                    "--run-dir", str(run_dir), "--data-dir", str(tmp_path / "data")],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while b"encoder to OpenVINO IR" not in log_path.read_bytes():   # the child gliner2-convert's log line
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        stopped_in = time.monotonic() - signalled
    finally:
        process.kill()
    log = log_path.read_text()
    print(f"stopped {stopped_in:.2f}s after SIGTERM, during the conversion")
    assert code == 0 and stopped_in < 5, log
    assert "stopped during start-up (SIGTERM)" in log and "SERVING" not in log.replace("NOT_SERVING", "")
    assert "encoder to OpenVINO IR" in log and "s elapsed)" in log     # the conversion's steps, with their time
    assert not _pids_alive(_envoy_pids(run_dir)), "Envoy outlived gliner2-serve"
    def converters():
        return subprocess.run(["pgrep", "-f", f"gliner_server.conversion.bundle {big_checkpoints[0]}"],
                              capture_output=True, text=True).stdout.split()

    gone_by = time.monotonic() + 5   # SIGKILL from PR_SET_PDEATHSIG, then reaped by init
    while converters() and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not converters(), "the conversion outlived gliner2-serve"


@pytest.mark.parametrize("limits, long_body, status", [
    (["--max-text-chars", "50"], {"text": SEED_TEXT + " And more text.", "labels": ["person"]}, 413),
    (["--long-text", "reject", "--window-words", "8"], {"text": SEED_TEXT, "labels": ["person"]}, 413),
], ids=["max-text-chars", "long-text-reject"])
def test_tight_limits_apply_to_callers_not_to_the_warm_up(limits, long_body, status, span_checkpoint, cache_dir,
                                                         tmp_path):
    stack = start_stack(span_checkpoint, cache_dir, tmp_path / "run", *limits)
    try:
        assert requests.post(stack.base_url + "/gliner-2", json={"text": "Tim Cook.", "labels": ["person"]},
                             timeout=30).status_code == 200
        refused = requests.post(stack.base_url + "/gliner-2", json=long_body, timeout=30)
        assert refused.status_code == status and refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    finally:
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=30) == 0, stack.log()
    assert "Traceback" not in stack.log()


DIGESTS = """
import sys
from pathlib import Path
from gliner_server.runtime.checkpoint import content_digest
cache, work, who = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
for i in range(60):
    checkpoint = work / f"{who}-{i}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(str(i))
    content_digest(checkpoint, cache)
"""


def test_replicas_sharing_a_cache_write_its_digest_memo_without_clashing(tmp_path):
    """Every new checkpoint digest rewrites the shared memo file; two processes doing it at once must not trip
    over each other's temporary file."""
    children = [subprocess.Popen([sys.executable, "-c", DIGESTS, str(tmp_path / "cache"), str(tmp_path / "work"),
                                  f"p{n}"], stderr=subprocess.PIPE, text=True) for n in range(3)]
    errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], errors
