"""Admission: a bound on model calls in flight, so the server's threads never all wait on the model.

Each gRPC call holds a worker thread while it waits for its pass, and a call
that finds every thread taken waits in grpcio's executor queue, unseen by the
batcher's queue bound and ahead of nothing: health checks would then time out
behind it and Envoy would take a merely busy server out of the pool. So model
calls get at most ``limit`` threads; the next one is refused at once (429 /
``RESOURCE_EXHAUSTED`` with Retry-After), and the remaining threads stay free
for health checks, model listings and history calls. History calls, which wait
on the database (at most its timeout), get half of those reserved threads, so
a stalled database never takes the threads health checks are answered on.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from ..errors import ErrorKind, ServiceError

RESERVED_WORKERS = 8  # threads model calls never take: health checks, listings, history, quick refusals


class Admission:
    def __init__(self, limit: int, what: str = "model calls"):
        if limit < 1:
            raise ValueError("admission limit must be at least 1")
        self.limit = limit
        self.what = what
        self._slots = threading.BoundedSemaphore(limit)

    @classmethod
    def for_workers(cls, workers: int) -> Admission:
        return cls(max(1, workers - RESERVED_WORKERS))

    @classmethod
    def for_history(cls, workers: int) -> Admission:
        """History calls wait on the database: they get half of the reserved threads, never all of them."""
        return cls(max(1, min(RESERVED_WORKERS, workers) // 2), "history calls")

    @contextmanager
    def slot(self):
        if not self._slots.acquire(blocking=False):
            raise ServiceError(ErrorKind.RATE_LIMITED,
                               f"The server is at capacity ({self.limit} {self.what} in flight); retry with backoff",
                               retry_after_s=1,
                               reason="admission" if self.what == "model calls" else "history_admission")
        try:
            yield
        finally:
            self._slots.release()
