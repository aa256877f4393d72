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
* **Several jobs at once**: :meth:`BatchScheduler.enqueue` queues a request's
  jobs together (``/run``'s inputs, which may differ in threshold), so they share
  passes, and they are refused or admitted together.
* **Timing and progress**: each job knows how long it waited and how long the
  passes carrying it ran (``queue_ms``, ``model_ms``); a pass runs in slices of
  at most ``max_texts``, and :meth:`BatchScheduler.stalled_for` tells how long
  the running slice has taken (the server's health watches it).

Token counts are estimated from characters (about 4 per token plus the schema's
labels); they steer grouping only and never change results.

The worker exits after ``idle_seconds`` without work and is restarted by the
next ``submit``; :meth:`BatchScheduler.close` stops it at once and drops its
reference to the model, so an unloaded model holds no thread and no memory.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


# run_batch(texts, schemas, options, chunk) -> results, or (results, tokens per text)
RunBatch = Callable[[Sequence[str], Sequence[Any], Hashable, int], Any]


class Cancellation(Protocol):
    """How a caller says it went away: ``add_callback(fn)`` runs ``fn`` then (grpc.ServicerContext has it).

    Returns False when the caller is already gone. The callback may also run
    after a normal answer; that is harmless.
    """

    def add_callback(self, callback: Callable[[], None]) -> bool: ...


class BatchEvents:
    """What a scheduler reports (metrics implement it; the scheduler knows nothing of Prometheus)."""

    def job_started(self, model: str, queue_seconds: float) -> None: ...

    def pass_run(self, model: str, texts: int, seconds: float) -> None: ...

    def refused(self, model: str) -> None: ...

    def dropped(self, model: str) -> None: ...


NO_EVENTS = BatchEvents()


@dataclass(frozen=True)
class JobSpec:
    """Texts to run with one schema (or one schema per text) and one set of options."""

    texts: Sequence[str]
    schema: Any
    options: Hashable
    schema_chars: int = 0
    per_text_schemas: bool = False     # ``schema`` is a list with one schema per text


@dataclass(eq=False)
class Job:
    texts: Sequence[str]
    schemas: Sequence[Any]
    options: Hashable
    tokens: int                        # estimated tokens of the longest text, schema included
    done: threading.Event = field(default_factory=threading.Event)
    results: list | None = None
    token_counts: list | None = None   # tokens the encoder saw per text (schema prompt included), if known
    error: BaseException | None = None
    running: bool = False              # taken into a pass: it finishes even if its caller leaves
    queued_at: float = field(default_factory=time.monotonic)
    queue_seconds: float = 0.0         # from queueing to its pass
    model_seconds: float = 0.0         # the passes that carried it


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

    def __init__(self, run_batch: RunBatch, policy: BatchPolicy = BatchPolicy(), *, name: str = "model",
                 events: BatchEvents = NO_EVENTS):
        self._run_batch: RunBatch | None = run_batch
        self.policy = policy
        self.name = name
        self.events = events
        self.stats = BatchStats()
        self._queue: deque[Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._last_pass_texts = 0
        self._texts_per_second = 0.0  # moving average over recent passes, for Retry-After
        self._slice_started: float | None = None

    def submit(self, texts: Sequence[str], schema, options: Hashable, *, schema_chars: int = 0,
               timeout: float | None = None, cancellation: Cancellation | None = None) -> list:
        """Run ``texts`` with ``schema``; block until done.

        After ``timeout`` seconds: DEADLINE_EXCEEDED. When ``cancellation`` fires
        first: CANCELLED. Either way the job is dropped if it has not started.
        """
        [job] = self.enqueue([JobSpec(texts, schema, options, schema_chars)], cancellation=cancellation)
        return self.wait(job, timeout)

    def enqueue(self, specs: Sequence[JobSpec], *, cancellation: Cancellation | None = None) -> list[Job]:
        """Queue one request's jobs together (all, or RATE_LIMITED for all); :meth:`wait` for each."""
        jobs = []
        for spec in specs:
            schemas = list(spec.schema) if spec.per_text_schemas else [spec.schema] * len(spec.texts)
            tokens = max(estimate_tokens(t, spec.schema_chars) for t in spec.texts)
            jobs.append(Job(list(spec.texts), schemas, spec.options, tokens))
        # Listen for the caller leaving before the jobs are queued, so a caller already gone is never run.
        if cancellation is not None and not cancellation.add_callback(lambda: self._abandon_all(jobs)):
            self._abandon_all(jobs)
        texts = sum(len(job.texts) for job in jobs)
        with self._cond:
            if self._closed:
                raise ServiceError(ErrorKind.UNAVAILABLE, f"Model {self.name} was unloaded; retry", retry_after_s=1)
            if any(job.done.is_set() for job in jobs):
                raise next(job.error for job in jobs if job.done.is_set())
            if self._queued_texts + texts > self.policy.max_queued_texts and self._queue:
                self.stats.rejected += 1
                self.events.refused(self.name)
                error = ServiceError(ErrorKind.RATE_LIMITED,
                                     f"Model {self.name} is at capacity ({self._queued_texts} texts queued); "
                                     "retry with backoff", retry_after_s=self._retry_after(), reason="queue_full")
                for job in jobs:
                    job.error = error
                    job.done.set()
                raise error
            now = time.monotonic()
            for job in jobs:
                job.queued_at = now
                self._queue.append(job)
            self._queued_texts += texts
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"batcher-{self.name}", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        return jobs

    def wait(self, job: Job, timeout: float | None = None) -> list:
        """``job``'s results once its pass ran; its error if it failed, was refused or dropped."""
        if not job.done.wait(timeout):
            self._abandon(job, cancelled=False, timeout=timeout)
            job.done.wait()  # set by _abandon, or by the pass that was already running it
        if job.error is not None:
            raise job.error
        return job.results

    def abandon(self, jobs: Sequence[Job]) -> None:
        """The caller will not wait for ``jobs`` (another of its jobs failed): drop those not started."""
        for job in jobs:
            self._abandon(job, cancelled=True)

    def _abandon_all(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._abandon(job, cancelled=True)

    def _abandon(self, job: Job, *, cancelled: bool, timeout: float | None = None) -> None:
        """The caller stopped waiting: drop ``job`` unless a pass already holds it."""
        with self._cond:
            if job.done.is_set() or job.running:
                return
            if job in self._queue:  # else the caller left before it was queued
                self._queue.remove(job)
                self._queued_texts -= len(job.texts)
            self.stats.dropped += 1
            self.events.dropped(self.name)
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

    def stalled_for(self) -> float | None:
        """Seconds the slice of a pass running now has taken so far; None when no pass runs."""
        started = self._slice_started
        return None if started is None else time.monotonic() - started

    def close(self) -> None:
        """Stop the worker (once the queue is empty, at once when idle) and let go of the model."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(30)
        self._run_batch = None

    # -- worker ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                jobs = self._next_batch()
                if jobs is None:
                    return
            self._run(jobs)

    def _next_batch(self) -> list[Job] | None:
        """The oldest live job plus companions within the budget. Holds ``_cond``."""
        policy = self.policy
        idle_since = time.monotonic()
        while True:
            while not self._queue:
                remaining = policy.idle_seconds - (time.monotonic() - idle_since)
                if remaining <= 0 or self._closed:
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
        now = time.monotonic()
        for job in batch:
            job.running = True
            job.queue_seconds = now - job.queued_at
            self.events.job_started(self.name, job.queue_seconds)
        return batch

    def _run(self, jobs: list[Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        schemas = [s for job in jobs for s in job.schemas]
        longest = max(job.tokens for job in jobs)
        chunk = max(1, min(self.policy.max_texts, self.policy.max_tokens // longest))
        started = time.monotonic()
        self.stats.running = len(texts)
        try:
            results, tokens = self._run_slices(texts, schemas, jobs[0].options, chunk)
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
            jobs[0].model_seconds = time.monotonic() - started
            jobs[0].done.set()
            return
        seconds = time.monotonic() - started
        rate = len(texts) / max(1e-3, seconds)
        self.stats.running = 0
        self.events.pass_run(self.name, len(texts), seconds)
        with self._cond:
            self.stats.passes += 1
            self.stats.texts += len(texts)
            self.stats.largest = max(self.stats.largest, len(texts))
            self._texts_per_second = rate if not self._texts_per_second else 0.8 * self._texts_per_second + 0.2 * rate
            start = 0
            for job in jobs:
                job.results = results[start:start + len(job.texts)]
                job.token_counts = tokens[start:start + len(job.texts)] if tokens is not None else None
                job.model_seconds = seconds
                start += len(job.texts)
                job.done.set()

    def _run_slices(self, texts, schemas, options, chunk: int) -> tuple[list, list | None]:
        """The pass, ``chunk`` texts at a time (as the library's own batching slices it), timing each slice."""
        run_batch = self._run_batch
        if run_batch is None:
            raise ServiceError(ErrorKind.UNAVAILABLE, f"Model {self.name} was unloaded; retry", retry_after_s=1)
        results: list = []
        tokens: list | None = []
        try:
            for at in range(0, len(texts), chunk):
                self._slice_started = time.monotonic()
                out = run_batch(texts[at:at + chunk], schemas[at:at + chunk], options, chunk)
                if isinstance(out, tuple):
                    out, counts = out
                else:
                    counts = None
                results += out
                tokens = tokens + list(counts) if tokens is not None and counts is not None else None
        finally:
            self._slice_started = None
        return results, tokens
