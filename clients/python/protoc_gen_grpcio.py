#!/usr/bin/env python3
"""A protoc plugin (for ``buf generate``) that runs grpcio-tools' own generators: python, pyi, grpc_python.

buf hands plugins a CodeGeneratorRequest; grpcio-tools ships its generators
inside a bundled protoc, not as plugins. So this plugin writes the request's
files as a descriptor set, runs that protoc over it, and answers with what it
wrote, with our own imports made relative exactly as the client's build does
(``codegen.py``). The output is therefore the same as the modules the installed
``gliner_client`` carries.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _drop_default_json_names(messages) -> None:
    """buf fills in every field's json_name; protoc, compiling .proto files, records only explicit ones. The
    generated modules embed the descriptor, so default names are cleared to match the client's build."""
    for message in messages:
        for field in message.field:
            if field.json_name == _camel(field.name):
                field.ClearField("json_name")
        _drop_default_json_names(message.nested_type)


def main() -> None:
    from codegen import _OWN_IMPORT
    from google.protobuf import descriptor_pb2
    from google.protobuf.compiler import plugin_pb2
    from grpc_tools import protoc

    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        descriptors = scratch_path / "files.binpb"
        files = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        for proto in files.file:
            _drop_default_json_names(proto.message_type)
        descriptors.write_bytes(files.SerializeToString())
        out = scratch_path / "out"
        out.mkdir()
        args = ["protoc", f"--descriptor_set_in={descriptors}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", *request.file_to_generate]
        if protoc.main(args) != 0:
            response.error = f"grpcio-tools protoc failed: {' '.join(args)}"
        else:
            for produced in sorted(p for p in out.rglob("*") if p.is_file()):
                text = _OWN_IMPORT.sub(r"from . import \1", produced.read_text())
                response.file.add(name=produced.name, content=text)   # flat, as gliner_client/v1 holds them
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
