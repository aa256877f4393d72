"""Generated code and the protos' compatibility (scripts/protos.py, proto/buf.gen.yaml).

* Every client's stubs come from proto/buf.gen.yaml with local plugins: the
  checked-in TypeScript and Go stubs, and the Python modules the client package
  builds, must equal a fresh generation.
* ``buf breaking`` against the latest release tag (v0.1.0 is the baseline; the
  previous commit when there is no tag): a change that would break existing
  clients fails here unless it is deliberate (a new major version).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import protos  # noqa: E402


def test_checked_in_stubs_equal_a_fresh_generation(tmp_path):
    protos.generate(tmp_path)
    assert protos.stale(tmp_path) == []
    for language in ("clients/typescript/src/gen/gliner/v1/gliner_service_pb.ts",
                     "clients/go/gen/gliner/v1/gliner_service_grpc.pb.go",
                     "var/generated/python/gliner_client/v1/gliner_service_pb2_grpc.py"):
        assert (tmp_path / language).stat().st_size > 1000, language


def test_a_stale_stub_is_caught(tmp_path):
    protos.generate(tmp_path)
    edited = tmp_path / "clients/go/gen/gliner/v1/schema.pb.go"
    edited.write_text(edited.read_text() + "\n// edited by hand\n")
    assert any("clients/go/gen/gliner/v1/schema.pb.go" in p for p in protos.stale(tmp_path))


def test_no_breaking_change_against_the_last_release():
    done = protos.breaking(protos.baseline())
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_breaking_change_is_caught(tmp_path):
    changed = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", changed)
    results = changed / "gliner" / "v1" / "results.proto"
    text = results.read_text()
    assert "  int32 start = 3;" in text
    results.write_text(text.replace("  int32 start = 3;", "  int64 start = 3;"))   # a field's type changes
    done = protos.breaking(protos.baseline(), proto_dir=changed)
    assert done.returncode != 0 and "start" in done.stdout, done.stdout + done.stderr


def test_the_baseline_is_the_release_tag_when_there_is_one():
    tags = subprocess.run(["git", "tag", "--list", "v*"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert protos.baseline() == (sorted(tags, key=lambda t: [int(x) for x in t[1:].split(".")])[-1]
                                 if tags else "HEAD~1")
