# Two images from one file (built on a machine with internet access):
#
#   docker build --target convert -t gliner2-convert .     # PyTorch, transformers, gliner2: conversion only
#   docker build -t gliner2-service .                      # serving: OpenVINO, tokenizers, numpy (no PyTorch)
#
#   docker run --rm -v models:/models gliner2-convert fastino/gliner2-base-v1 /models/gliner2-base-v1
#   docker run -p 8080:8080 -v models:/models gliner2-service --model /models/gliner2-base-v1 --port 8080
#
# The serving image runs a replica (--no-envoy), a front (--upstream), or both in one container (the
# default: model + Envoy on 8080). It serves converted bundles; a hub id or checkpoint directory given
# to it fails with a message naming the convert image (conversion needs PyTorch, which it lacks).
FROM python:3.11-slim AS source
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto proto
COPY clients clients
COPY server server

# The converter: the CPU build of torch comes from PyTorch's own index (PyPI's default Linux wheel pulls CUDA).
FROM source AS convert
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "torch==2.13.0" ./clients/python ".[convert]"
ENTRYPOINT ["gliner2-convert"]

FROM source AS serve
RUN pip install --no-cache-dir ./clients/python . \
    && useradd --create-home --uid 10001 gliner \
    && mkdir -p /cache /data /models && chown gliner /cache /data /models
USER gliner
ENV GLINER2_CACHE_DIR=/cache GLINER2_DATA_DIR=/data HF_HOME=/cache/hf
# 8080: Envoy (REST and gRPC); 50051: a replica's gRPC port (--no-envoy --grpc-port 50051);
# 9464: Prometheus metrics (--metrics-port 9464 --metrics-host 0.0.0.0)
EXPOSE 8080 50051 9464
ENTRYPOINT ["gliner2-serve"]
CMD ["--model", "/models/gliner2-base-v1", "--port", "8080"]
