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
    result = subprocess.run([sys.executable, "-m", "gliner_server.demo_model", str(target)],
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
