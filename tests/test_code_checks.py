"""The code checks CI runs: ruff (lint rules and import order, configured in pyproject.toml) over the service,
the Python client and the benchmarks. A finding fails the suite; fix it, or ignore one rule on one line with a
reason."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("server", "clients/python", "bench")


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_would_catch_a_finding(tmp_path):
    """The configuration is live: an unused import and unsorted imports in a checked folder are findings."""
    probe = ROOT / "bench" / f"_ruff_probe_{tmp_path.name}.py"
    probe.write_text("import sys\nimport os\n\n\ndef f():\n    return os.sep\n")
    try:
        done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                               str(probe.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert done.returncode == 1 and "F401" in done.stdout and "I001" in done.stdout, done.stdout
