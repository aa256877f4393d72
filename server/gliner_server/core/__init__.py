"""Transport-agnostic core: a normalised extraction request in, results out.

The gRPC handlers and every REST dialect translate their wire format into
:class:`~gliner_server.core.schema.ExtractionSchema` /
:class:`~gliner_server.core.engine.ExtractionRequest` and call
:class:`~gliner_server.core.engine.InferenceEngine`; nothing here knows about
protobuf, HTTP or JSON dialects.
"""
