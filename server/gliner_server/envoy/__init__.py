"""Envoy front for the GLiNER2 gRPC server: REST/JSON transcoding, native gRPC
passthrough, health, and the provider's JSON error shape on one port.

Typical use from a supervisor::

    from gliner_client.v1 import gliner_service_pb2
    from gliner_server.envoy import EnvoyProcess, EnvoySettings, descriptor_set_bytes

    settings = EnvoySettings(listen_port=8080, admin_port=9901,
                             upstreams=[("127.0.0.1", 50051)],
                             services=["gliner.v1.GlinerService"])
    envoy = EnvoyProcess(settings, run_dir,
                         descriptor=descriptor_set_bytes([gliner_service_pb2]))
    envoy.start()          # returns once admin /ready says LIVE; envoy.port is bound
    ...                    # poll envoy.is_running(); restart with listen_port=envoy.port
    envoy.stop()           # SIGTERM, then SIGKILL after a timeout

Start it from a long-lived thread: Envoy gets SIGTERM when that thread exits.
"""
from .config import EnvoySettings, config_dict, render_config
from .descriptors import descriptor_set, descriptor_set_bytes, http_rules, status_detail_modules
from .process import EnvoyProcess, EnvoyStartError, envoy_binary, free_port

__all__ = [
    "EnvoyProcess",
    "EnvoySettings",
    "EnvoyStartError",
    "config_dict",
    "descriptor_set",
    "descriptor_set_bytes",
    "envoy_binary",
    "free_port",
    "http_rules",
    "render_config",
    "status_detail_modules",
]
