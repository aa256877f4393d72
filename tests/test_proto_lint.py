"""The protos pass buf's STANDARD lint (buf from the npm registry, see scripts/install.sh).

proto/buf.yaml names the googleapis dependency on the Buf Schema Registry, which
is out of reach here; the test builds a workspace with the same lint settings and
the google/api protos that googleapis-common-protos installs.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import protos  # noqa: E402 - scripts/protos.py builds the same offline workspace for generation and breaking


def workspace(tmp_path: Path) -> Path:
    return protos.workspace(ROOT / "proto", tmp_path)


def lint(path: Path) -> subprocess.CompletedProcess:
    assert protos.BUF.exists(), "buf is installed by scripts/install.sh"
    return protos.buf("lint", cwd=path)


def test_protos_pass_standard_lint(tmp_path):
    result = lint(workspace(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_catches_a_violation(tmp_path):
    """The check is live: a request message that breaks the naming rule fails it."""
    ws = workspace(tmp_path)
    service = ws / "proto" / "gliner" / "v1" / "gliner_service.proto"
    service.write_text(service.read_text().replace("BatchExtractRequest", "BatchExtractInput"))
    result = lint(ws)
    assert result.returncode != 0 and "BatchExtractInput" in result.stdout
