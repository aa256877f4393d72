"""Generates the Python protobuf and gRPC modules of package gliner.v1.

protoc writes ``from gliner.v1 import x_pb2`` for imports between our own
files; the modules live in ``gliner_client.v1`` instead, so those imports are
rewritten to relative ones (protoletariat does the same but pins protobuf<6).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

_OWN_IMPORT = re.compile(r"^from gliner\.v1 import (\w+_pb2)", re.MULTILINE)


def proto_files(proto_root: Path) -> list[Path]:
    return sorted((proto_root / "gliner" / "v1").glob("*.proto"))


def generate(proto_root: Path, out_dir: Path) -> None:
    import google.api  # googleapis-common-protos ships google/api/*.proto
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / "_staging"
    staging.mkdir(exist_ok=True)
    includes = [
        str(proto_root),
        str(Path(list(google.api.__path__)[0]).resolve().parent.parent),
        str(Path(grpc_tools.__file__).resolve().parent / "_proto"),
    ]
    files = [str(p.relative_to(proto_root)) for p in proto_files(proto_root)]
    args = ["protoc", *(f"-I{i}" for i in includes),
            f"--python_out={staging}", f"--pyi_out={staging}",
            f"--grpc_python_out={staging}", *files]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed: {' '.join(args)}")
    for produced in (staging / "gliner" / "v1").iterdir():
        text = _OWN_IMPORT.sub(r"from . import \1", produced.read_text())
        (out_dir / produced.name).write_text(text)
        produced.unlink()
    for d in (staging / "gliner" / "v1", staging / "gliner", staging):
        d.rmdir()
    (out_dir / "__init__.py").write_text('"""Generated from proto/gliner/v1 at build time."""\n')
