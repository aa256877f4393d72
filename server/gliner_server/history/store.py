"""``HistoryStore``: durable inference history, feedback and training export.

Every method runs in its own short transaction on a pooled connection, so one
store is safe to share between threads. Writes are committed when the method
returns. A client only ever sees its own inferences: another client's id is
answered exactly like an unknown one (NOT_FOUND).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence, TextIO

import sqlalchemy as sa

from ..errors import ErrorKind, ServiceError
from . import database
from .group_commit import GroupCommit
from .records import VERDICTS, FeedbackRecord, InferenceRecord, new_feedback_id, utc_now
from .tables import feedback, inferences
from .training import training_example

MAX_PAGE_SIZE = 1000

# True for a feedback row that is its inference's newest (the current verdict).
_newer = feedback.alias("newer")
_IS_CURRENT = feedback.c.seq == (
    sa.select(sa.func.max(_newer.c.seq))
    .where(_newer.c.inference_id == feedback.c.inference_id)
    .scalar_subquery()
)


class HistoryStore:
    """Inference history and feedback in SQLite or PostgreSQL (see :meth:`open`)."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._writes: GroupCommit[dict] = GroupCommit(self._insert)

    @classmethod
    def open(cls, url: str) -> "HistoryStore":
        """Connect to ``sqlite:///path`` or ``postgresql+psycopg://...`` and migrate to head."""
        engine = database.create_engine(url)
        try:
            database.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inferences ---------------------------------------------------------

    def record(self, rec: InferenceRecord) -> None:
        """Store one inference; committed (durable) when this returns."""
        self.record_many([rec])

    def record_many(self, records: Sequence[InferenceRecord]) -> None:
        """Store inferences; committed (durable) when this returns.

        Concurrent callers share a transaction (see :mod:`.group_commit`). A
        privacy-mode record never stores its text or output.
        """
        if any(rec.created_at.tzinfo is None for rec in records):
            raise ValueError("InferenceRecord.created_at must be timezone-aware")
        if records:
            self._writes.write([_inference_row(rec) for rec in records])

    def _insert(self, rows: Sequence[dict]) -> None:
        with self._transaction(write=True) as connection:
            connection.execute(inferences.insert(), list(rows))

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

    def get(self, client_id: str, inference_id: str) -> InferenceRecord:
        """One of the client's inferences, or NOT_FOUND."""
        with self._transaction() as connection:
            return self._owned(connection, client_id, inference_id)

    def get_with_feedback(self, client_id: str, inference_id: str
                          ) -> tuple[InferenceRecord, FeedbackRecord | None]:
        """One of the client's inferences and its current feedback (or None)."""
        with self._transaction() as connection:
            record = self._owned(connection, client_id, inference_id)
            return record, self._current(connection, [inference_id]).get(inference_id)

    # -- feedback -----------------------------------------------------------

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
        query = (
            sa.select(inferences.c.text, inferences.c.schema, inferences.c.output,
                      feedback.c.verdict, feedback.c.corrected_output)
            .join(feedback, feedback.c.inference_id == inferences.c.id)
            .where(_IS_CURRENT, inferences.c.text.is_not(None), inferences.c.schema.is_not(None))
            .order_by(inferences.c.created_at, inferences.c.id)
        )
        if client_id is not None:
            query = query.where(inferences.c.client_id == client_id)
        written = 0
        with self._transaction() as connection:
            for row in connection.execution_options(yield_per=500).execute(query):
                truth = row.output if row.verdict == "correct" else row.corrected_output
                example = training_example(row.text, row.schema, truth)
                if example is not None:
                    out.write(json.dumps(example, ensure_ascii=False) + "\n")
                    written += 1
        return written

    # -- internals ----------------------------------------------------------

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


def _utc(value: datetime) -> datetime:
    """Database datetimes as aware UTC (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _inference_from_row(row) -> InferenceRecord:
    return InferenceRecord(
        id=row["id"], created_at=_utc(row["created_at"]), route=row["route"],
        model_id=row["model_id"], task=row["task"], client_id=row["client_id"], text=row["text"],
        schema=row["schema"], parameters=row["parameters"], output=row["output"],
        latency_ms=row["latency_ms"], project_id=row["project_id"],
        training_job_id=row["training_job_id"], privacy=row["privacy"],
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
        "id": rec.id, "created_at": rec.created_at.astimezone(timezone.utc),
        "route": rec.route, "model_id": rec.model_id, "task": rec.task,
        "client_id": rec.client_id, "text": None if hidden else rec.text,
        "schema": rec.schema, "parameters": rec.parameters,
        "output": None if hidden else rec.output, "latency_ms": float(rec.latency_ms),
        "project_id": rec.project_id, "training_job_id": rec.training_job_id,
        "privacy": bool(rec.privacy),
    }
