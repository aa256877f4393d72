"""Builds gliner_client, generating its protobuf/gRPC modules from ../../proto.

The generated modules are never committed or edited: every build (wheel,
regular or editable install) regenerates them from the .proto files.
"""
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from codegen import generate  # noqa: E402

PROTO_ROOT = HERE.parent.parent / "proto"

if PROTO_ROOT.is_dir():
    generate(PROTO_ROOT, HERE / "gliner_client" / "v1")

setup()
