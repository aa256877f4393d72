#!/usr/bin/env python3
"""protoc plugin shim: runs $REAL_PLUGIN and declares FEATURE_PROTO3_OPTIONAL in its answer (check.sh)."""
import os
import subprocess
import sys

from google.protobuf.compiler import plugin_pb2

done = subprocess.run([os.environ["REAL_PLUGIN"]], input=sys.stdin.buffer.read(), capture_output=True)
sys.stderr.buffer.write(done.stderr)
if done.returncode:
    sys.exit(done.returncode)
answer = plugin_pb2.CodeGeneratorResponse.FromString(done.stdout)
answer.supported_features |= plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
sys.stdout.buffer.write(answer.SerializeToString())
