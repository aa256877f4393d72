"""The protos pass buf's STANDARD lint (buf from the npm registry, see scripts/install.sh).

proto/buf.yaml names the googleapis dependency on the Buf Schema Registry, which
is out of reach here; the test builds a workspace with the same lint settings and
the google/api protos that googleapis-common-protos installs.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import google.api
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


def workspace(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("buf.yaml", "buf.lock"))
    third_party = tmp_path / "third_party" / "google" / "api"
    shutil.copytree(Path(list(google.api.__path__)[0]), third_party, ignore=shutil.ignore_patterns("*.py*", "__pycache__"))
    lint = yaml.safe_load((ROOT / "proto" / "buf.yaml").read_text())["lint"]
    lint["ignore_only"] = {rule: [f"proto/{p}" for p in paths] for rule, paths in lint.get("ignore_only", {}).items()}
    config = {"version": "v2", "modules": [{"path": "proto", "lint": lint},
                                           {"path": "third_party", "lint": {"ignore": ["third_party"]}}]}
    (tmp_path / "buf.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def lint(path: Path) -> subprocess.CompletedProcess:
    assert BUF.exists(), "buf is installed by scripts/install.sh"
    return subprocess.run([str(BUF), "lint"], cwd=path, capture_output=True, text=True, timeout=120)


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
