"""Client for the self-hosted GLiNER2 service: generated stubs (``gliner_client.v1``)
and a thin typed client (:class:`GlinerClient`)."""
from .client import GlinerClient, GlinerError, build_schema

__all__ = ["GlinerClient", "GlinerError", "build_schema"]
