"""``HistoryStore``: durable inference history, feedback and training export.

Every method runs in its own short transaction on a pooled connection, so one
store is safe to share between threads. Writes are committed when the method
returns. A client only ever sees its own inferences: another client's id is
answered exactly like an unknown one (NOT_FOUND).

**Bounded.** Nothing here waits longer than ``timeout_s`` for the database:
inference records go through the group-commit writer thread and their callers
stop waiting in time; every other call runs on a small pool of history threads
(``io_threads``) while its caller waits at most ``timeout_s``. A database that
does not answer, or fails, is a :class:`ServiceError` ``UNAVAILABLE`` (503)
saying so, never a hang or a 500, and never an acknowledged inference that is
not stored. While commits stall or fail, :meth:`check_writable` refuses new
inferences at once (before any model work), and :meth:`probe` (run by the
server's watchdog) notices when the database takes writes again.

**Idempotent retries.** A record may carry a ``dedupe_key`` (a digest of the
call's request id, its position in the call and what was asked, see
``core.recording``): a second record with the same key for the same client is
not stored again, and the first one's id is answered instead, so a call that
Envoy or a client retries with its request id is recorded once.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

import sqlalchemy as sa

from ..errors import ErrorKind, ServiceError
from . import database
from .group_commit import CommitTimeout, GroupCommit
from .records import VERDICTS, FeedbackRecord, InferenceRecord, new_feedback_id, utc_now
from .tables import feedback, heartbeat, inferences
from .training import training_example

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
EXPORT_PAGE = 500           # rows per database round trip of an export
IO_THREADS = 4              # history calls that may wait on the database at once

T = TypeVar("T")

# True for a feedback row that is its inference's newest (the current verdict).
_newer = feedback.alias("newer")
_IS_CURRENT = feedback.c.seq == (
    sa.select(sa.func.max(_newer.c.seq))
    .where(_newer.c.inference_id == feedback.c.inference_id)
    .scalar_subquery()
)


def unavailable(what: str, retry_after_s: int = 1) -> ServiceError:
    return ServiceError(ErrorKind.UNAVAILABLE, f"The inference history is unavailable: {what}; retry later",
                        retry_after_s=retry_after_s, reason="history_unavailable")


def _bounded_call(method):
    """The method runs through :meth:`HistoryStore._bounded` (a history thread, a time limit)."""
    @functools.wraps(method)
    def bounded(self, *args, **kwargs):
        return self._bounded(lambda: method(self, *args, **kwargs))
    return bounded


class HistoryStore:
    """Inference history and feedback in SQLite or PostgreSQL (see :meth:`open`)."""

    def __init__(self, engine: sa.Engine, *, timeout_s: float = database.DEFAULT_TIMEOUT_S,
                 io_threads: int = IO_THREADS, on_commit: Callable[[float, int, bool], None] | None = None):
        self._engine = engine
        self.timeout_s = timeout_s
        self._writes: GroupCommit[dict] = GroupCommit(self._insert, on_commit=on_commit)
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="history-io")
        self._probe_name = f"{socket.gethostname()}:{os.getpid()}"[:200]
        self._last_failure = 0.0

    @classmethod
    def open(cls, url: str, *, timeout_s: float = database.DEFAULT_TIMEOUT_S, **options) -> HistoryStore:
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://...`` and migrate to head."""
        engine = database.create_engine(url, timeout_s=timeout_s)
        try:
            database.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, timeout_s=timeout_s, **options)

    def close(self) -> None:
        self._writes.close(timeout=self.timeout_s)
        self._io.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inferences ---------------------------------------------------------

    def record(self, rec: InferenceRecord) -> None:
        """Store one inference; committed (durable) when this returns."""
        self.record_many([rec])

    def record_many(self, records: Sequence[InferenceRecord]) -> list[str]:
        """Store inferences; committed (durable) when this returns. Returns the stored ids.

        Concurrent callers share a transaction (see :mod:`.group_commit`). A
        privacy-mode record never stores its text or output. A record whose
        ``dedupe_key`` is already stored for its client is not stored again:
        its place in the answer holds the stored record's id. Not stored
        within ``timeout_s``: ``UNAVAILABLE``.
        """
        if any(rec.created_at.tzinfo is None for rec in records):
            raise ValueError("InferenceRecord.created_at must be timezone-aware")
        if not records:
            return []
        try:
            return self._writes.write([_inference_row(rec) for rec in records], timeout=self.timeout_s)
        except CommitTimeout:
            raise unavailable(f"the database did not confirm the record within {self.timeout_s:g}s, so the "
                              "inference was not acknowledged", self._retry_after()) from None
        except sa.exc.SQLAlchemyError as error:
            self._last_failure = time.monotonic()
            logger.error("recording %d inference(s) failed: %s", len(records), _brief(error))
            raise unavailable("the database refused the record, so the inference was not acknowledged",
                              self._retry_after()) from None

    def check_writable(self) -> None:
        """UNAVAILABLE at once while records cannot be stored: a commit stalled, or one just failed.

        Called before a model runs, so that work which could not be recorded is
        not done. After a failure, calls are let through again after a second
        (one of them then finds out whether the database recovered).
        """
        busy = self._writes.busy_for()
        if busy is not None and busy > self.timeout_s:
            raise unavailable(f"a commit has been waiting for the database for {busy:.0f}s", self._retry_after())
        if self._writes.failing_for() is not None and time.monotonic() - self._last_failure < 1.0:
            raise unavailable("the database is refusing writes", 1)

    def stalled_for(self) -> tuple[float, str] | None:
        """How long recording has not worked, and why (for health); None when it works."""
        busy, failing = self._writes.busy_for(), self._writes.failing_for()
        if busy is not None and (failing is None or busy >= failing):
            return busy, f"a history commit has been running for {busy:.1f}s"
        if failing is not None:
            return failing, f"history commits have been failing for {failing:.1f}s"
        return None

    def probe(self) -> bool:
        """While commits fail (and none is stuck), try one small real write; True if it worked."""
        if self._writes.failing_for() is None or self._writes.busy_for() is not None:
            return self._writes.failing_for() is None
        try:
            self._bounded(self._write_heartbeat)
        except ServiceError:
            return False
        self._writes.mark_ok()
        logger.info("the history database takes writes again")
        return True

    def _write_heartbeat(self) -> None:
        with self._transaction(write=True) as connection:
            if connection.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            statement = insert(heartbeat).values(name=self._probe_name, at=utc_now())
            connection.execute(statement.on_conflict_do_update(index_elements=["name"],
                                                               set_={"at": statement.excluded.at}))

    def _retry_after(self) -> int:
        return max(1, int(self.timeout_s))

    def _insert(self, rows: Sequence[dict]) -> list[str]:
        """Insert ``rows`` (one transaction); the id each is stored under (an earlier one for a duplicate)."""
        with self._transaction(write=True) as connection:
            if not any(row["dedupe_key"] for row in rows):
                connection.execute(inferences.insert(), list(rows))
                return [row["id"] for row in rows]
            if connection.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            statement = (insert(inferences).on_conflict_do_nothing(index_elements=["client_id", "dedupe_key"])
                         .returning(inferences.c.id))
            stored = set(connection.execute(statement, list(rows)).scalars())
            duplicates = [row for row in rows if row["id"] not in stored]
            earlier: dict[tuple[str, str], str] = {}
            for row in duplicates:
                found = connection.execute(sa.select(inferences.c.id).where(
                    inferences.c.client_id == row["client_id"],
                    inferences.c.dedupe_key == row["dedupe_key"])).scalar_one_or_none()
                earlier[(row["client_id"], row["dedupe_key"])] = found or row["id"]
            return [row["id"] if row["id"] in stored else earlier[(row["client_id"], row["dedupe_key"])]
                    for row in rows]

    @_bounded_call
    def list(self, client_id: str, *, limit: int = 20, offset: int = 0,
             model_id: str | None = None, task: str | None = None,
             project_id: str | None = None, training_job_id: str | None = None,
             ) -> tuple[list[InferenceRecord], int]:
        """A page of the client's inferences, newest first, and how many match in all."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise ServiceError.invalid(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", field="limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ServiceError.invalid("offset must be a non-negative integer", field="offset")
        conditions = [inferences.c.client_id == client_id]
        for column, value in (("model_id", model_id), ("task", task), ("project_id", project_id),
                              ("training_job_id", training_job_id)):
            if value is not None:
                conditions.append(inferences.c[column] == value)
        page = (sa.select(inferences).where(*conditions)
                .order_by(inferences.c.created_at.desc(), inferences.c.id.desc())
                .limit(limit).offset(offset))
        with self._transaction() as connection:
            total = connection.execute(
                sa.select(sa.func.count()).select_from(inferences).where(*conditions)).scalar_one()
            rows = connection.execute(page).mappings().all()
        return [_inference_from_row(row) for row in rows], total

    @_bounded_call
    def get(self, client_id: str, inference_id: str) -> InferenceRecord:
        """One of the client's inferences, or NOT_FOUND."""
        with self._transaction() as connection:
            return self._owned(connection, client_id, inference_id)

    @_bounded_call
    def get_with_feedback(self, client_id: str, inference_id: str
                          ) -> tuple[InferenceRecord, FeedbackRecord | None]:
        """One of the client's inferences and its current feedback (or None)."""
        with self._transaction() as connection:
            record = self._owned(connection, client_id, inference_id)
            return record, self._current(connection, [inference_id]).get(inference_id)

    # -- feedback -----------------------------------------------------------

    @_bounded_call
    def add_feedback(self, client_id: str, inference_id: str, verdict: str,
                     corrected_output: Any | None = None) -> FeedbackRecord:
        """Add a verdict on one of the client's inferences; it becomes the current one.

        ``"correct"`` confirms the recorded output and takes no correction;
        ``"incorrect"`` needs ``corrected_output``, a JSON object in the shape of
        the recorded output.
        """
        if verdict not in VERDICTS:
            raise ServiceError.invalid("verdict must be 'correct' or 'incorrect'", field="verdict")
        if verdict == "incorrect" and not isinstance(corrected_output, dict):
            raise ServiceError.invalid("an 'incorrect' verdict needs corrected_output, a JSON object",
                                       field="corrected_output")
        if verdict == "correct" and corrected_output is not None:
            raise ServiceError.invalid("a 'correct' verdict takes no corrected_output",
                                       field="corrected_output")
        record = FeedbackRecord(id=new_feedback_id(), inference_id=inference_id, client_id=client_id,
                                verdict=verdict, corrected_output=corrected_output, created_at=utc_now())
        with self._transaction(write=True) as connection:
            self._owned(connection, client_id, inference_id)
            connection.execute(feedback.insert().values(
                id=record.id, inference_id=inference_id, client_id=client_id, verdict=verdict,
                corrected_output=corrected_output, created_at=record.created_at))
        return record

    @_bounded_call
    def feedback(self, client_id: str, inference_id: str) -> list[FeedbackRecord]:
        """Every feedback on one of the client's inferences, oldest first (NOT_FOUND if not theirs)."""
        with self._transaction() as connection:
            self._owned(connection, client_id, inference_id)
            rows = connection.execute(
                sa.select(feedback).where(feedback.c.inference_id == inference_id)
                .order_by(feedback.c.seq)).mappings().all()
        return [_feedback_from_row(row) for row in rows]

    def current_feedback(self, client_id: str, inference_id: str) -> FeedbackRecord | None:
        """The latest feedback on one of the client's inferences, or None (NOT_FOUND if not theirs)."""
        return self.get_with_feedback(client_id, inference_id)[1]

    @_bounded_call
    def current_feedback_many(self, client_id: str, inference_ids: list[str]
                              ) -> dict[str, FeedbackRecord]:
        """Current feedback by inference id, for those of ``inference_ids`` the client owns
        and has given feedback on (e.g. to decorate a :meth:`list` page)."""
        with self._transaction() as connection:
            return self._current(connection, inference_ids, client_id=client_id)

    # -- export -------------------------------------------------------------

    def export_training_jsonl(self, out: TextIO, *, client_id: str | None = None) -> int:
        """Write a ``gliner2`` training JSONL line per inference with current feedback.

        Confirmed inferences contribute their recorded output, corrected ones
        the correction. Rows without text (privacy mode) or without a schema,
        and outputs with nothing to train on, are skipped. Returns the number
        of lines written.
        """
        written = 0
        for lines in self.export_training_pages(client_id=client_id):
            out.write("".join(lines))
            written += len(lines)
        return written

    def export_training_pages(self, *, client_id: str | None = None, page_rows: int = EXPORT_PAGE,
                              model_id: str | None = None, project_id: str | None = None,
                              since: datetime | None = None) -> Iterator[list[str]]:
        """The export of :meth:`export_training_jsonl`, a page of JSONL lines at a time (each ends in a newline).

        Each page is one bounded database round trip (keyset pagination in
        creation order), so an export of any size streams in constant memory.
        ``model_id``, ``project_id`` and ``since`` narrow it to those inferences.
        """
        after: tuple[datetime, str] | None = None
        filters = []
        if model_id is not None:
            filters.append(inferences.c.model_id == model_id)
        if project_id is not None:
            filters.append(inferences.c.project_id == project_id)
        if since is not None:
            filters.append(inferences.c.created_at >= since)
        while True:
            rows = self._bounded(functools.partial(self._export_rows, client_id, after, page_rows, filters))
            lines = []
            for row in rows:
                truth = row.output if row.verdict == "correct" else row.corrected_output
                example = training_example(row.text, row.schema, truth)
                if example is not None:
                    lines.append(json.dumps(example, ensure_ascii=False) + "\n")
            if lines:
                yield lines
            if len(rows) < page_rows:
                return
            after = (rows[-1].created_at, rows[-1].id)

    def _export_rows(self, client_id: str | None, after: tuple[datetime, str] | None, limit: int,
                     filters: Sequence = ()) -> list:
        query = (
            sa.select(inferences.c.id, inferences.c.created_at, inferences.c.text, inferences.c.schema,
                      inferences.c.output, feedback.c.verdict, feedback.c.corrected_output)
            .join(feedback, feedback.c.inference_id == inferences.c.id)
            .where(_IS_CURRENT, inferences.c.text.is_not(None), inferences.c.schema.is_not(None), *filters)
            .order_by(inferences.c.created_at, inferences.c.id)
            .limit(limit)
        )
        if client_id is not None:
            query = query.where(inferences.c.client_id == client_id)
        if after is not None:
            query = query.where(sa.tuple_(inferences.c.created_at, inferences.c.id) > sa.tuple_(*after))
        with self._transaction() as connection:
            return connection.execute(query).all()

    # -- internals ----------------------------------------------------------

    def _bounded(self, call: Callable[[], T], timeout_s: float | None = None) -> T:
        """``call()`` on a history thread; UNAVAILABLE when the database does not answer in time (``timeout_s``,
        by default the store's) or fails."""
        timeout_s = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        try:
            future = self._io.submit(call)
        except RuntimeError:  # the store is closed (shutting down)
            raise unavailable("the server is shutting down") from None
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise unavailable(f"the database did not answer within {timeout_s:g}s",
                              self._retry_after()) from None
        except sa.exc.SQLAlchemyError as error:
            logger.error("a history call failed: %s", _brief(error))
            raise unavailable("the database failed the call") from None

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[sa.Connection]:
        with self._engine.connect() as connection:
            if write:
                database.write_options(connection)
            with connection.begin():
                yield connection

    @staticmethod
    def _owned(connection: sa.Connection, client_id: str, inference_id: str) -> InferenceRecord:
        row = connection.execute(
            sa.select(inferences).where(inferences.c.id == inference_id,
                                        inferences.c.client_id == client_id)).mappings().first()
        if row is None:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Inference not found: {inference_id}")
        return _inference_from_row(row)

    @staticmethod
    def _current(connection: sa.Connection, inference_ids: list[str],
                 client_id: str | None = None) -> dict[str, FeedbackRecord]:
        query = sa.select(feedback).where(_IS_CURRENT, feedback.c.inference_id.in_(list(inference_ids)))
        if client_id is not None:
            query = query.where(feedback.c.client_id == client_id)
        return {row["inference_id"]: _feedback_from_row(row)
                for row in connection.execute(query).mappings()}


def _brief(error: BaseException) -> str:
    """A database error in one line (SQLAlchemy's text carries the statement and its parameters)."""
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {str(original).splitlines()[0] if str(original) else ''}"[:300]


def _utc(value: datetime) -> datetime:
    """Database datetimes as aware UTC (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _inference_from_row(row) -> InferenceRecord:
    return InferenceRecord(
        id=row["id"], created_at=_utc(row["created_at"]), route=row["route"],
        model_id=row["model_id"], task=row["task"], client_id=row["client_id"], text=row["text"],
        schema=row["schema"], parameters=row["parameters"], output=row["output"],
        latency_ms=row["latency_ms"], project_id=row["project_id"],
        training_job_id=row["training_job_id"], privacy=row["privacy"], request_id=row["request_id"],
    )


def _feedback_from_row(row) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"], inference_id=row["inference_id"], client_id=row["client_id"],
        verdict=row["verdict"], corrected_output=row["corrected_output"],
        created_at=_utc(row["created_at"]),
    )


def _inference_row(rec: InferenceRecord) -> dict:
    hidden = rec.privacy
    return {
        "id": rec.id, "created_at": rec.created_at.astimezone(UTC),
        "route": rec.route, "model_id": rec.model_id, "task": rec.task,
        "client_id": rec.client_id, "text": None if hidden else rec.text,
        "schema": rec.schema, "parameters": rec.parameters,
        "output": None if hidden else rec.output, "latency_ms": float(rec.latency_ms),
        "project_id": rec.project_id, "training_job_id": rec.training_job_id,
        "privacy": bool(rec.privacy),
        "request_id": rec.request_id, "dedupe_key": rec.dedupe_key,
    }
