"""Assembles the grpcio server: services, health, reflection, authentication.

Health (the whole server, service ``""``, and each API service) is SERVING once
:meth:`GrpcServer.mark_serving` is called and as long as work progresses
(:class:`~gliner_server.core.progress.ProgressWatch`: history commits and model
passes); NOT_SERVING while it is stalled, and for good once shutdown starts:
that is readiness. The ``liveness`` service is SERVING from start to shutdown:
that is what a liveness probe should ask, so that a stalled dependency takes a
replica out of rotation without getting it restarted.
"""
from __future__ import annotations

import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gliner_client.v1 import gliner_service_pb2 as service_pb2
from gliner_client.v1 import gliner_service_pb2_grpc as service_grpc
from gliner_client.v1 import history_service_pb2 as history_pb2
from gliner_client.v1 import history_service_pb2_grpc as history_grpc
from gliner_client.v1 import training_service_pb2 as training_pb2
from gliner_client.v1 import training_service_pb2_grpc as training_grpc

from ..config import EndpointConfig
from ..core.recording import RecordingEngine
from ..history.datasets import DatasetLimits, DatasetStore
from ..training.jobs import JobStore
from .admission import Admission
from .auth import ApiKeys, AuthInterceptor
from .decoding import DecodingInterceptor
from .history_service import InferenceHistoryService
from .service import GlinerService
from .training_service import TrainingService

PROTO_MODULES = (service_pb2, history_pb2, training_pb2)
SERVICE_NAMES = (service_pb2.DESCRIPTOR.services_by_name["GlinerService"].full_name,
                 history_pb2.DESCRIPTOR.services_by_name["InferenceHistoryService"].full_name,
                 training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name)
# A grpc.health.v1 service name that is SERVING while the process runs, whatever its readiness: what a
# liveness probe asks (a stalled database makes the server NOT_SERVING, which must not get it restarted).
LIVENESS_SERVICE = "liveness"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OVERFLOW_CALLS = 64  # calls that may wait for a free thread (the reserved ones answer them quickly)
# A REST body of max_request_bytes reaches the server wrapped in a message (HttpBody's framing, or a
# typed message from JSON): the server takes this much more, so that Envoy's 413 is the one bound.
MESSAGE_HEADROOM_BYTES = 64 * 1024


class GrpcServer:
    """The running grpcio server and its health servicer."""

    def __init__(self, engine: RecordingEngine, *, address: str, keys: ApiKeys = ApiKeys(),
                 endpoints: dict[str, EndpointConfig] | None = None, workers: int = 64, max_run_inputs: int = 64,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_send_bytes: int = MAX_MESSAGE_BYTES,
                 dataset_limits: DatasetLimits = DatasetLimits(), jobs: JobStore | None = None):
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.admission = Admission.for_workers(workers)
        self.history_admission = Admission.for_history(workers)
        self._status_lock = threading.Lock()
        self._ready = False          # mark_serving() was called
        self._stalled = None         # why work does not progress (ProgressWatch), or None
        self._stopping = False
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
            # Beyond this many calls grpcio refuses at once (RESOURCE_EXHAUSTED) instead of queueing
            # without bound; below it, calls past the admission limit are refused by the service.
            maximum_concurrent_rpcs=workers + OVERFLOW_CALLS,
            interceptors=[AuthInterceptor(keys), DecodingInterceptor()],
            # Requests are bounded like REST bodies; answers (e.g. a history export) may be larger.
            options=[("grpc.max_receive_message_length", max_message_bytes + MESSAGE_HEADROOM_BYTES),
                     ("grpc.max_send_message_length", max_send_bytes),
                     ("grpc.so_reuseport", 0)],
        )
        if engine.history is not None and jobs is None:
            jobs = JobStore(engine.history)
        service_grpc.add_GlinerServiceServicer_to_server(
            GlinerService(engine, keys, endpoints or {}, max_run_inputs=max_run_inputs, admission=self.admission,
                          jobs=jobs), self.server)
        if engine.history is not None:
            history_grpc.add_InferenceHistoryServiceServicer_to_server(
                InferenceHistoryService(engine.history, keys, self.history_admission,
                                        chunk_bytes=max(4096, max_send_bytes // 4)), self.server)
            training_grpc.add_TrainingServiceServicer_to_server(
                TrainingService(DatasetStore(engine.history, dataset_limits), jobs, keys, self.history_admission,
                                models=getattr(engine.engine, "models", None)), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"could not bind the gRPC server to {address}")
        self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    def _set_status(self, status) -> None:
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)

    def _publish(self) -> None:
        with self._status_lock:
            if self._stopping:
                return
            serving = self._ready and self._stalled is None
            self._set_status(health_pb2.HealthCheckResponse.SERVING if serving
                             else health_pb2.HealthCheckResponse.NOT_SERVING)

    def start(self) -> None:
        self.server.start()

    def mark_serving(self) -> None:
        self._ready = True
        self._publish()

    def set_stalled(self, reason: str | None) -> None:
        """Work stopped progressing (NOT_SERVING, with the reason) or moves again (SERVING)."""
        self._stalled = reason
        self._publish()

    @property
    def serving(self) -> bool:
        return self._ready and self._stalled is None and not self._stopping

    def mark_not_serving(self) -> None:
        """Shutting down: health checks fail from now on, calls are still answered."""
        with self._status_lock:
            self._stopping = True
            self.health.enter_graceful_shutdown()

    def stop(self, grace: float) -> None:
        """NOT_SERVING first (so Envoy stops routing here), then drain in-flight calls."""
        self.mark_not_serving()
        self.server.stop(grace).wait()
