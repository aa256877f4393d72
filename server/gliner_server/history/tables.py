"""SQLAlchemy Core tables of the history (the migrations create exactly these).

JSON columns use the plain ``JSON`` type, not ``JSONB``: key order is
meaningful in GLiNER2 schemas and results, and ``json`` keeps the text as sent.
"""
from __future__ import annotations

import sqlalchemy as sa

# Named constraints, so later migrations can refer to them on every backend.
metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# A Python None is stored as SQL NULL, never as the JSON literal null.
_Json = sa.JSON(none_as_null=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY.
_Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

inferences = sa.Table(
    "inferences",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("model_id", sa.String(500), nullable=False),
    sa.Column("task", sa.String(100), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("text", sa.Text(), nullable=True),
    sa.Column("schema", _Json, nullable=True),
    sa.Column("parameters", _Json, nullable=True),
    sa.Column("output", _Json, nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("project_id", sa.String(200), nullable=True),
    sa.Column("training_job_id", sa.String(200), nullable=True),
    sa.Column("privacy", sa.Boolean(), nullable=False),
    # The call's request id (Envoy's x-request-id, or the caller's), for correlating logs and retries.
    sa.Column("request_id", sa.String(200), nullable=True),
    # A digest of (request id, position, what was asked): a retried call is stored once (see store.py).
    sa.Column("dedupe_key", sa.String(64), nullable=True),
    sa.Index("ix_inferences_client_created", "client_id", "created_at", "id"),
    sa.Index("uq_inferences_client_dedupe", "client_id", "dedupe_key", unique=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    # Database-assigned order of arrival: the highest seq is the current verdict.
    sa.Column("seq", _Serial, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("inference_id", sa.String(64), sa.ForeignKey("inferences.id"), nullable=False),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("corrected_output", _Json, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_feedback_inference_seq", "inference_id", "seq"),
)

# One row per writer that probes the database while commits fail (see HistoryStore.probe):
# a real write, so that a database that accepts writes again is noticed without traffic.
heartbeat = sa.Table(
    "heartbeat",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Training datasets, scoped to an API client like its inferences; the records (gliner2 training JSONL
# records, validated when the dataset was created) are kept whole, in order.
datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("task_counts", _Json, nullable=False),
    sa.Column("records", _Json, nullable=False),
    sa.UniqueConstraint("client_id", "name", name="uq_datasets_client_name"),
)

# Training jobs, scoped to an API client. ``spec`` is what was asked (base model and where it was resolved
# from, datasets, hyper-parameters); ``progress``, ``evaluation`` and ``artifact`` are the worker's. A running
# job's worker writes ``heartbeat_at`` every few seconds: a job whose heartbeat is stale is failed (its
# worker died), never left running.
training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("project_id", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("stop_requested", sa.Boolean(), nullable=False),
    sa.Column("spec", _Json, nullable=False),
    sa.Column("progress", _Json, nullable=True),
    sa.Column("evaluation", _Json, nullable=True),
    sa.Column("artifact", _Json, nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index("ix_training_jobs_status_created", "status", "created_at"),
    sa.Index("ix_training_jobs_client_created", "client_id", "created_at"),
)

# A training job's log, in order of arrival (bounded per job by the worker).
training_job_logs = sa.Table(
    "training_job_logs",
    metadata,
    sa.Column("seq", _Serial, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Index("ix_training_job_logs_job_seq", "job_id", "seq"),
)
