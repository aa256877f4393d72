"""Self-hosted GLiNER2 inference service: OpenVINO runtime, gRPC server, Envoy front end."""

__version__ = "0.1.0"
