"""The TypeScript and Go clients' own test suites (each starts its own gliner2-serve on the tiny checkpoint
and runs the shared conformance vectors), run from here so CI runs them with everything else."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLINER_VENV": str(ROOT / ".venv")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=850)


def test_typescript_client_suite():
    done = run(["npm", "test", "--silent"], ROOT / "clients" / "typescript")
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout and "# pass " in done.stdout


def test_go_client_suite():
    done = run(["bash", "test.sh"], ROOT / "clients" / "go")
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "FAIL" not in done.stdout and "ok " in done.stdout
