"""Cross-request dynamic batching: concurrent requests share one model pass.

Each served model has one scheduler. Request threads ``submit`` their texts and
block; one worker thread takes the oldest waiting job and adds other waiting
jobs that can share its pass, then runs them all through the library's
``batch_extract`` at once (one encoder call, one batched pass of the heads),
with a schema per text, and hands each job its own results. This is
text-embeddings-inference's design (``max-batch-tokens``, a queue and a batching
task), fitted to GLiNER2:

* **What can share a pass**: jobs with the same threshold and output flags (the
  library takes those per call); schemas may differ, since ``batch_extract``
  takes one per text.
* **Budget**: at most ``max_texts`` texts and ``max_tokens`` padded tokens
  (texts × the longest, as the encoder pads) per pass. Companions are picked by
  closeness of length to the oldest job, to limit padding.
* **Fairness**: the oldest job always goes next; a job is never split, except
  that one larger than the budget runs alone, in chunks of ``max_texts``.
* **Wait**: under load, requests pile up while a pass runs, so batches form
  without waiting; but clients whose answers just came back need a moment to
  send their next request. So when the last pass carried more texts than are
  queued now, the worker waits up to ``wait_ms`` for that many (at most
  ``max_texts``). A lone client never waits.
* **Bounded queue**: past ``max_queued_texts`` waiting texts, ``submit`` fails at
  once with RATE_LIMITED instead of letting latency grow without bound; the
  error carries a Retry-After estimate (the queue's texts at the recent rate).
* **Deadlines and cancellation**: a job whose caller stops waiting (its
  ``timeout`` passes, or its ``cancellation`` fires: a gRPC deadline, a client
  that disconnected) is dropped if it has not started; one already in a pass
  finishes with it.
* **Isolation**: if a shared pass raises, each of its jobs is re-run alone, so
  one request's failure is never another's.

Token counts are estimated from characters (about 4 per token plus the schema's
labels); they steer grouping only and never change results.

The worker exits after ``idle_seconds`` without work and is restarted by the
next ``submit``, so an evicted model holds no thread.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Protocol, Sequence

from ..errors import ErrorKind, ServiceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    max_texts: int = 16              # texts per model pass
    max_tokens: int = 8192           # padded tokens per model pass (texts × longest)
    wait_ms: float = 0.0             # how long to wait for companions when the queue is short
    max_queued_texts: int = 1024     # texts waiting beyond this are refused (RATE_LIMITED)
    idle_seconds: float = 30.0       # the worker thread exits after this long without work

    def __post_init__(self):
        if self.max_texts < 1 or self.max_tokens < 1 or self.max_queued_texts < 1:
            raise ValueError("max_texts, max_tokens and max_queued_texts must be at least 1")
        if self.wait_ms < 0:
            raise ValueError("wait_ms must not be negative")


RunBatch = Callable[[Sequence[str], Sequence[Any], Hashable, int], list]


class Cancellation(Protocol):
    """How a caller says it went away: ``add_callback(fn)`` runs ``fn`` then (grpc.ServicerContext has it).

    Returns False when the caller is already gone. The callback may also run
    after a normal answer; that is harmless.
    """

    def add_callback(self, callback: Callable[[], None]) -> bool: ...


@dataclass(eq=False)
class _Job:
    texts: Sequence[str]
    schema: Any
    options: Hashable
    tokens: int                        # estimated tokens of the longest text, schema included
    done: threading.Event = field(default_factory=threading.Event)
    results: list | None = None
    error: BaseException | None = None
    running: bool = False              # taken into a pass: it finishes even if its caller leaves


@dataclass
class BatchStats:
    """Counters for tests and metrics: passes run and texts they carried."""
    passes: int = 0
    texts: int = 0
    largest: int = 0
    shared_pass_failures: int = 0
    running: int = 0                   # texts in the pass running now
    rejected: int = 0                  # submits refused because the queue was full
    dropped: int = 0                   # queued jobs dropped because their caller stopped waiting


def estimate_tokens(text: str, schema_chars: int) -> int:
    return 2 + (len(text) + schema_chars) // 4


class BatchScheduler:
    """One model's queue and worker. ``run_batch(texts, schemas, options, chunk)`` runs a pass."""

    def __init__(self, run_batch: RunBatch, policy: BatchPolicy = BatchPolicy(), *, name: str = "model"):
        self._run_batch = run_batch
        self.policy = policy
        self.name = name
        self.stats = BatchStats()
        self._queue: deque[_Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._last_pass_texts = 0
        self._texts_per_second = 0.0  # moving average over recent passes, for Retry-After

    def submit(self, texts: Sequence[str], schema, options: Hashable, *, schema_chars: int = 0,
               timeout: float | None = None, cancellation: Cancellation | None = None) -> list:
        """Run ``texts`` with ``schema``; block until done.

        After ``timeout`` seconds: DEADLINE_EXCEEDED. When ``cancellation`` fires
        first: CANCELLED. Either way the job is dropped if it has not started.
        """
        tokens = max(estimate_tokens(t, schema_chars) for t in texts)
        job = _Job(list(texts), schema, options, tokens)
        # Listen for the caller leaving before the job is queued, so a caller already gone is never run.
        if cancellation is not None and not cancellation.add_callback(lambda: self._abandon(job, cancelled=True)):
            self._abandon(job, cancelled=True)
        with self._cond:
            if job.done.is_set():
                raise job.error
            if self._queued_texts + len(job.texts) > self.policy.max_queued_texts and self._queue:
                self.stats.rejected += 1
                job.error = ServiceError(ErrorKind.RATE_LIMITED,
                                         f"Model {self.name} is at capacity ({self._queued_texts} texts queued); "
                                         "retry with backoff", retry_after_s=self._retry_after())
                job.done.set()
                raise job.error
            self._queue.append(job)
            self._queued_texts += len(job.texts)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"batcher-{self.name}", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        if not job.done.wait(timeout):
            self._abandon(job, cancelled=False, timeout=timeout)
            job.done.wait()  # set by _abandon, or by the pass that was already running it
        if job.error is not None:
            raise job.error
        return job.results

    def _abandon(self, job: _Job, *, cancelled: bool, timeout: float | None = None) -> None:
        """The caller stopped waiting: drop ``job`` unless a pass already holds it."""
        with self._cond:
            if job.done.is_set() or job.running:
                return
            if job in self._queue:  # else the caller left before it was queued
                self._queue.remove(job)
                self._queued_texts -= len(job.texts)
            self.stats.dropped += 1
            job.error = (ServiceError(ErrorKind.CANCELLED, "The request was cancelled by the client")
                         if cancelled else
                         ServiceError(ErrorKind.DEADLINE_EXCEEDED,
                                      f"No result within {timeout:.3g}s; the request was cancelled"))
            job.done.set()

    def _retry_after(self) -> int:
        """Whole seconds until the queue has likely drained at the recent pass rate (at least 1)."""
        rate = self._texts_per_second or 1.0
        return max(1, min(60, math.ceil(self._queued_texts / rate)))

    def queued_texts(self) -> int:
        with self._cond:
            return self._queued_texts

    # -- worker ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                jobs = self._next_batch()
                if jobs is None:
                    return
            self._run(jobs)

    def _next_batch(self) -> list[_Job] | None:
        """The oldest live job plus companions within the budget. Holds ``_cond``."""
        policy = self.policy
        idle_since = time.monotonic()
        while True:
            while not self._queue:
                remaining = policy.idle_seconds - (time.monotonic() - idle_since)
                if remaining <= 0:
                    self._worker = None
                    return None
                self._cond.wait(remaining)
            # Wait for companions only while load says they are coming: the last pass
            # was larger than what is queued now. A lone client never waits.
            target = min(policy.max_texts, self._last_pass_texts)
            if policy.wait_ms > 0 and self._queued_texts < target:
                deadline = time.monotonic() + policy.wait_ms / 1000.0
                while self._queued_texts < target and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            if self._queue:  # jobs whose callers left meanwhile are gone from it
                break
        head = self._queue[0]
        batch = [head]
        rows, longest = len(head.texts), head.tokens
        if rows < policy.max_texts:
            companions = sorted((j for j in list(self._queue)[1:] if j.options == head.options),
                                key=lambda j: abs(j.tokens - head.tokens))
            for job in companions:
                new_rows, new_longest = rows + len(job.texts), max(longest, job.tokens)
                if new_rows > policy.max_texts or new_rows * new_longest > policy.max_tokens:
                    continue
                batch.append(job)
                rows, longest = new_rows, new_longest
        chosen = set(map(id, batch))
        self._queue = deque(j for j in self._queue if id(j) not in chosen)
        self._queued_texts -= rows
        self._last_pass_texts = rows
        for job in batch:
            job.running = True
        return batch

    def _run(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        schemas = [job.schema for job in jobs for _ in job.texts]
        longest = max(job.tokens for job in jobs)
        chunk = max(1, min(self.policy.max_texts, self.policy.max_tokens // longest))
        started = time.monotonic()
        self.stats.running = len(texts)
        try:
            results = self._run_batch(texts, schemas, jobs[0].options, chunk)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting request thread(s)
            self.stats.running = 0
            if len(jobs) > 1:
                self.stats.shared_pass_failures += 1
                logger.warning("a shared pass of %d requests failed (%s); re-running them one by one",
                               len(jobs), type(error).__name__)
                for job in jobs:
                    self._run([job])
                return
            jobs[0].error = error
            jobs[0].done.set()
            return
        rate = len(texts) / max(1e-3, time.monotonic() - started)
        self.stats.running = 0
        with self._cond:
            self.stats.passes += 1
            self.stats.texts += len(texts)
            self.stats.largest = max(self.stats.largest, len(texts))
            self._texts_per_second = rate if not self._texts_per_second else 0.8 * self._texts_per_second + 0.2 * rate
            start = 0
            for job in jobs:
                job.results = results[start:start + len(job.texts)]
                start += len(job.texts)
                job.done.set()
