# gliner2-service image: the same command runs a replica (--no-envoy), a front
# (--upstream), or both in one container (the default: model + Envoy on 8080).
# Built on a machine with internet access; the CPU build of torch comes from
# PyTorch's own index (PyPI's default Linux wheel pulls CUDA).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto proto
COPY clients clients
COPY server server
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "torch==2.13.0" ./clients/python . \
    && useradd --create-home --uid 10001 gliner \
    && mkdir -p /cache /data && chown gliner /cache /data

USER gliner
ENV GLINER2_CACHE_DIR=/cache GLINER2_DATA_DIR=/data HF_HOME=/cache/hf
# 8080: Envoy (REST and gRPC); 50051: a replica's gRPC port (--no-envoy --grpc-port 50051);
# 9464: Prometheus metrics (--metrics-port 9464 --metrics-host 0.0.0.0)
EXPOSE 8080 50051 9464
ENTRYPOINT ["gliner2-serve"]
CMD ["--model", "fastino/gliner2-base-v1", "--port", "8080"]
