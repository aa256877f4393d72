"""The protos' tooling, offline: generate every client's stubs, check them, and check for breaking changes.

    .venv/bin/python scripts/protos.py generate           # writes the stubs (proto/buf.gen.yaml)
    .venv/bin/python scripts/protos.py generate --check   # fails if the checked-in stubs are stale
    .venv/bin/python scripts/protos.py breaking [--against REF]

``proto/buf.yaml`` names googleapis on the Buf Schema Registry, which these
machines cannot reach; every command here runs buf on a workspace holding the
protos and the google/api files that googleapis-common-protos installs, with
the same lint and breaking settings. ``breaking`` compares with the protos of
the latest release tag (``v*``), or the previous commit when there is none.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
TEMPLATE = ROOT / "proto" / "buf.gen.yaml"
# Checked-in output of the template (the Python stubs are generated when clients/python is built instead).
CHECKED_IN = ["clients/typescript/src/gen", "clients/go/gen"]
PYTHON_OUT = "var/generated/python/gliner_client/v1"


def workspace(proto_dir: Path, target: Path) -> Path:
    """A buf workspace at ``target``: ``proto_dir``'s protos and google/api, with proto/buf.yaml's settings."""
    import google.api

    shutil.copytree(proto_dir, target / "proto", ignore=shutil.ignore_patterns("buf.yaml", "buf.lock", "*.gen.yaml"))
    shutil.copytree(Path(list(google.api.__path__)[0]), target / "third_party" / "google" / "api",
                    ignore=shutil.ignore_patterns("*.py*", "__pycache__"))
    settings = yaml.safe_load((ROOT / "proto" / "buf.yaml").read_text())
    lint = settings["lint"]
    lint["ignore_only"] = {rule: [f"proto/{p}" for p in paths] for rule, paths in lint.get("ignore_only", {}).items()}
    config = {"version": "v2", "modules": [
        {"path": "proto", "lint": lint, "breaking": settings.get("breaking", {})},
        {"path": "third_party", "lint": {"ignore": ["third_party"]}}]}
    (target / "buf.yaml").write_text(yaml.safe_dump(config))
    return target


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    if not BUF.exists():
        sys.exit(f"{BUF} is missing: run scripts/install.sh")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def generate(out_root: Path) -> None:
    """Runs the template with every ``out`` under ``out_root`` (the repository root writes them in place)."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        ws = workspace(ROOT / "proto", scratch_path / "ws")
        template = yaml.safe_load(TEMPLATE.read_text())
        for plugin in template["plugins"]:
            plugin["out"] = str(out_root / plugin["out"])
            local = plugin["local"]
            plugin["local"] = [_resolve(p) for p in local] if isinstance(local, list) else _resolve(local)
        rendered = scratch_path / "buf.gen.yaml"
        rendered.write_text(yaml.safe_dump(template, sort_keys=False))
        done = buf("generate", str(ws), "--template", str(rendered), "--path", str(ws / "proto" / "gliner"))
        if done.returncode != 0:
            sys.exit(f"buf generate failed:\n{done.stdout}{done.stderr}")


def _resolve(path: str) -> str:
    """Plugin paths are relative to the repository root; bare names are looked up on PATH."""
    candidate = ROOT / path
    return str(candidate) if "/" in path and candidate.exists() else path


def stale(out_root: Path) -> list[str]:
    """What differs between a fresh generation under ``out_root`` and the checked-in stubs."""
    problems = []
    for folder in CHECKED_IN:
        problems += _differences(ROOT / folder, out_root / folder, folder)
    built = Path(__import__("gliner_client.v1", fromlist=["x"]).__path__[0])   # what the client's build made
    fresh = out_root / PYTHON_OUT
    for produced in sorted(fresh.glob("*.py*")):
        if not (built / produced.name).exists() or not filecmp.cmp(produced, built / produced.name, shallow=False):
            problems.append(f"gliner_client/v1/{produced.name} (installed) differs from a fresh generation")
    return problems


def _differences(kept: Path, fresh: Path, label: str) -> list[str]:
    kept_files = {p.relative_to(kept) for p in kept.rglob("*") if p.is_file()} if kept.exists() else set()
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    problems = [f"{label}/{p}: not generated any more" for p in sorted(kept_files - fresh_files)]
    problems += [f"{label}/{p}: missing (not checked in)" for p in sorted(fresh_files - kept_files)]
    problems += [f"{label}/{p}: differs from a fresh generation" for p in sorted(kept_files & fresh_files)
                 if not filecmp.cmp(kept / p, fresh / p, shallow=False)]
    return problems


def baseline() -> str:
    """The latest release tag, else the previous commit."""
    tags = subprocess.run(["git", "tag", "--list", "v*", "--sort=-v:refname"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()
    return tags[0] if tags else "HEAD~1"


def protos_at(ref: str, target: Path) -> Path:
    """The proto/ folder as it was at ``ref`` (git archive), under ``target``."""
    archive = subprocess.run(["git", "archive", ref, "proto"], cwd=ROOT, capture_output=True, check=True).stdout
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "proto"


def breaking(against: str, proto_dir: Path = ROOT / "proto") -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        current = workspace(proto_dir, scratch_path / "current")
        previous = workspace(protos_at(against, scratch_path / "archive"), scratch_path / "previous")
        return buf("breaking", str(current), "--against", str(previous))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate the stubs (proto/buf.gen.yaml)")
    gen.add_argument("--check", action="store_true", help="compare a fresh generation with the checked-in stubs")
    brk = commands.add_parser("breaking", help="buf breaking against a release (default: the latest v* tag)")
    brk.add_argument("--against", help="a git ref (default: the latest v* tag, else HEAD~1)")
    args = parser.parse_args()
    if args.command == "generate" and not args.check:
        generate(ROOT)
        print("generated: " + ", ".join([*CHECKED_IN, PYTHON_OUT]))
    elif args.command == "generate":
        with tempfile.TemporaryDirectory() as scratch:
            generate(Path(scratch))
            problems = stale(Path(scratch))
        if problems:
            sys.exit("stale generated code (run: .venv/bin/python scripts/protos.py generate):\n  "
                     + "\n  ".join(problems))
        print("generated code is up to date")
    else:
        against = args.against or baseline()
        done = breaking(against)
        print(done.stdout + done.stderr, end="")
        if done.returncode != 0:
            sys.exit(f"breaking changes against {against} (deliberate? then tag a new major version)")
        print(f"no breaking changes against {against}")


if __name__ == "__main__":
    main()
