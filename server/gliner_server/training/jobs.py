"""Training jobs in the history database: what the API creates, lists and stops, and what workers claim.

A job is ``requested`` when created, ``running`` once a worker claims it, then
``complete``, ``failed`` or ``stopped``. Workers claim the oldest requested job
with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (several workers on
several machines share one queue and never take the same job) and a
compare-and-set update everywhere (SQLite has one worker, see
:mod:`.worker`). A running job's worker writes a heartbeat every few
seconds; a job whose heartbeat is older than ``stale_after_s`` is marked
``failed`` with the reason by whoever looks first (a worker polling, or the API
listing jobs), so a job whose worker died is never left ``running``.

Jobs are scoped to the API client like its inferences and datasets: another
client's job id is answered exactly like an unknown one (404). Every call is
bounded like the history's (see :class:`~gliner_server.history.store.HistoryStore`).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..core.recording import MAX_ID_CHARS
from ..errors import ErrorKind, ServiceError, shown
from ..history.records import utc_now
from ..history.store import _utc
from ..history.tables import datasets, training_job_logs, training_jobs

JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
STATUSES = ("requested", "running", "complete", "failed", "stopped")
ACTIVE = ("requested", "running")
FINISHED = ("complete", "failed", "stopped")
TRAINING_TYPES = ("lora", "full")
DEFAULT_LEARNING_RATE = {"lora": 5e-4, "full": 1e-5}
DEFAULT_EPOCHS, DEFAULT_HELD_OUT_FRACTION, DEFAULT_BATCH_SIZE = 3, 0.1, 8


@dataclass(frozen=True)
class JobLimits:
    """Bounds per API client and per job (the configuration's training keys)."""

    max_active_jobs: int = 2          # requested + running jobs per client (more: 429)
    max_epochs: int = 100
    max_batch_size: int = 64
    max_log_lines: int = 2000         # kept per job (the oldest go first)


@dataclass(frozen=True)
class JobRecord:
    id: str
    client_id: str
    status: str
    created_at: datetime
    spec: dict
    project_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    worker: str | None = None
    stop_requested: bool = False
    progress: dict | None = None
    evaluation: dict | None = None
    artifact: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class LogLine:
    at: datetime
    level: str
    message: str


def not_found(job_id: str) -> ServiceError:
    return ServiceError(ErrorKind.NOT_FOUND, f"Training job not found: {shown(job_id)}", field="id")


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass(frozen=True)
class JobRequest:
    """A validated CreateTrainingJob request, defaults filled in (``base``: where the base model comes from,
    as the TrainingService resolved it)."""

    base_model: str
    base: dict
    datasets: list[str]
    model_name: str
    training_type: str
    nr_epochs: int
    learning_rate: float
    project_id: str | None
    held_out_fraction: float
    batch_size: int

    def spec(self) -> dict:
        """What the job row keeps as its ``spec`` (the project has a column of its own)."""
        return {k: v for k, v in asdict(self).items() if k != "project_id"}


def validate_request(*, base_model: str, base: dict, dataset_names: list[str], model_name: str,
                     training_type: str, nr_epochs: int, learning_rate: float, project_id: str | None,
                     held_out_fraction: float | None, batch_size: int, limits: JobLimits) -> JobRequest:
    """The request with defaults filled in; 400 naming the first bad field."""
    if not dataset_names:
        raise ServiceError.invalid("A training job needs at least one dataset: \"datasets\": [{\"name\": ...}]",
                                   field="datasets")
    if len(set(dataset_names)) != len(dataset_names):
        raise ServiceError.invalid("A dataset is named twice in \"datasets\"", field="datasets")
    training_type = training_type or "lora"
    if training_type not in TRAINING_TYPES:
        raise ServiceError.invalid(f"training_type must be one of {', '.join(TRAINING_TYPES)}, got "
                                   f"{shown(training_type)}", field="training_type")
    nr_epochs = nr_epochs or DEFAULT_EPOCHS
    if not 1 <= nr_epochs <= limits.max_epochs:
        raise ServiceError.invalid(f"nr_epochs must be between 1 and {limits.max_epochs}, got {nr_epochs}",
                                   field="nr_epochs")
    learning_rate = learning_rate or DEFAULT_LEARNING_RATE[training_type]
    if not 0.0 < learning_rate < 1.0:
        raise ServiceError.invalid(f"learning_rate must be between 0 and 1, got {learning_rate}",
                                   field="learning_rate")
    held_out = DEFAULT_HELD_OUT_FRACTION if held_out_fraction is None else held_out_fraction
    if not 0.0 <= held_out <= 0.5:
        raise ServiceError.invalid(f"held_out_fraction must be between 0 and 0.5, got {held_out}",
                                   field="held_out_fraction")
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    if not 1 <= batch_size <= limits.max_batch_size:
        raise ServiceError.invalid(f"batch_size must be between 1 and {limits.max_batch_size}, got {batch_size}",
                                   field="batch_size")
    for name, value in (("model_name", model_name), ("project_id", project_id)):
        if value is not None and len(value) > MAX_ID_CHARS:
            raise ServiceError.invalid(f"{name} has more than {MAX_ID_CHARS} characters", field=name)
    return JobRequest(base_model=base_model, base=base, datasets=list(dataset_names), model_name=model_name,
                      training_type=training_type, nr_epochs=nr_epochs, learning_rate=learning_rate,
                      project_id=project_id, held_out_fraction=held_out, batch_size=batch_size)


class JobStore:
    """Training jobs and their logs in the database of ``store`` (a :class:`HistoryStore`, whose bounds they share)."""

    def __init__(self, store, limits: JobLimits = JobLimits(), *, stale_after_s: float = 30.0):
        self.store = store
        self.limits = limits
        self.stale_after_s = stale_after_s

    # -- the API's side ------------------------------------------------------------------

    def create(self, client_id: str, request: JobRequest) -> JobRecord:
        job = JobRecord(id=new_job_id(), client_id=client_id, status="requested", created_at=utc_now(),
                        spec=request.spec(), project_id=request.project_id)

        def insert():
            with self.store._transaction(write=True) as connection:
                found = {row.name: row.record_count for row in connection.execute(
                    sa.select(datasets.c.name, datasets.c.record_count).where(
                        datasets.c.client_id == client_id, datasets.c.name.in_(request.datasets)))}
                missing = [name for name in request.datasets if name not in found]
                if missing:
                    raise ServiceError(ErrorKind.NOT_FOUND, f"Dataset not found: {shown(missing[0])}",
                                       field="datasets")
                total = sum(found.values())
                held_out = int(total * request.held_out_fraction)
                if total - held_out < 1 or (request.held_out_fraction > 0 and held_out < 1):
                    raise ServiceError.invalid(
                        f"The datasets hold {total} record(s): too few to train on and hold out "
                        f"{request.held_out_fraction:g} of them; add records or set held_out_fraction to 0",
                        field="datasets")
                active = connection.execute(sa.select(sa.func.count()).select_from(training_jobs).where(
                    training_jobs.c.client_id == client_id, training_jobs.c.status.in_(ACTIVE))).scalar_one()
                if active >= self.limits.max_active_jobs:
                    raise ServiceError(ErrorKind.RATE_LIMITED, f"You have {active} training jobs requested or "
                                       "running, the most allowed; wait for one to finish or stop one",
                                       retry_after_s=60)
                connection.execute(training_jobs.insert().values(
                    id=job.id, client_id=client_id, status=job.status, project_id=job.project_id,
                    created_at=job.created_at, stop_requested=False, spec=job.spec))

        self.store._bounded(insert)
        return job

    def list(self, client_id: str, *, status: str | None = None,
             project_id: str | None = None) -> list[JobRecord]:
        if status and status not in STATUSES:
            raise ServiceError.invalid(f"status must be one of {', '.join(STATUSES)}, got {shown(status)}",
                                       field="status")
        self.reap_stale()

        def select():
            query = sa.select(training_jobs).where(training_jobs.c.client_id == client_id)
            if status:
                query = query.where(training_jobs.c.status == status)
            if project_id:
                query = query.where(training_jobs.c.project_id == project_id)
            with self.store._transaction() as connection:
                return connection.execute(query.order_by(training_jobs.c.created_at.desc(),
                                                         training_jobs.c.id)).mappings().all()

        return [_job_from_row(row) for row in self.store._bounded(select)]

    def completed_for(self, client_id: str, *, timeout_s: float | None = None) -> list[JobRecord]:
        """The client's complete jobs, newest first (the model listing's: no reaping, its own time bound)."""
        def select():
            with self.store._transaction() as connection:
                return connection.execute(sa.select(training_jobs).where(
                    training_jobs.c.client_id == client_id, training_jobs.c.status == "complete")
                    .order_by(training_jobs.c.created_at.desc(), training_jobs.c.id)).mappings().all()

        return [_job_from_row(row) for row in self.store._bounded(select, timeout_s)]

    def get(self, client_id: str, job_id: str) -> JobRecord:
        if not JOB_ID.match(job_id or ""):
            raise not_found(job_id)
        self.reap_stale()

        def select():
            with self.store._transaction() as connection:
                return connection.execute(sa.select(training_jobs).where(
                    training_jobs.c.id == job_id, training_jobs.c.client_id == client_id)).mappings().first()

        row = self.store._bounded(select)
        if row is None:
            raise not_found(job_id)
        return _job_from_row(row)

    def logs(self, client_id: str, job_id: str, *, tail: int = 0) -> tuple[JobRecord, list[LogLine]]:
        if tail < 0:
            raise ServiceError.invalid("tail must not be negative", field="tail")
        job = self.get(client_id, job_id)

        def select():
            query = sa.select(training_job_logs).where(training_job_logs.c.job_id == job_id)
            with self.store._transaction() as connection:
                if tail:
                    rows = connection.execute(query.order_by(training_job_logs.c.seq.desc()).limit(tail)).mappings()
                    return list(reversed(rows.all()))
                return connection.execute(query.order_by(training_job_logs.c.seq)).mappings().all()

        return job, [LogLine(_utc(r["at"]), r["level"], r["message"]) for r in self.store._bounded(select)]

    def stop(self, client_id: str, job_id: str) -> JobRecord:
        """A requested job is stopped at once; a running one is asked to stop (its worker stops it)."""
        job = self.get(client_id, job_id)
        if job.status in FINISHED:
            raise ServiceError.invalid(f"Training job {job_id} is {job.status} already; only a requested or "
                                       "running job can be stopped", field="id")
        now = utc_now()

        def update():
            with self.store._transaction(write=True) as connection:
                connection.execute(training_jobs.update().where(
                    training_jobs.c.id == job_id, training_jobs.c.status == "requested").values(
                    status="stopped", stop_requested=True, finished_at=now, error="stopped before it started"))
                connection.execute(training_jobs.update().where(
                    training_jobs.c.id == job_id, training_jobs.c.status == "running").values(stop_requested=True))

        self.store._bounded(update)
        self.log(job_id, "INFO", "stop requested")
        return self.get(client_id, job_id)

    def completed(self, job_id: str) -> JobRecord | None:
        """A complete job by id, whoever owns it (the model registry's lookup); None otherwise."""
        if not JOB_ID.match(job_id or ""):
            return None

        def select():
            with self.store._transaction() as connection:
                return connection.execute(sa.select(training_jobs).where(
                    training_jobs.c.id == job_id, training_jobs.c.status == "complete")).mappings().first()

        row = self.store._bounded(select)
        return None if row is None else _job_from_row(row)

    def reap_stale(self) -> int:
        """Fail running jobs whose worker stopped heartbeating; how many there were.

        A read first: the write transaction (SQLite's write lock) is only taken when there is one.
        """
        cutoff = utc_now() - timedelta(seconds=self.stale_after_s)
        stale_rows = sa.select(training_jobs.c.id, training_jobs.c.worker).where(
            training_jobs.c.status == "running", training_jobs.c.heartbeat_at < cutoff)

        def look():
            with self.store._transaction() as connection:
                return connection.execute(stale_rows).first() is not None

        if not self.store._bounded(look):
            return 0

        def update():
            with self.store._transaction(write=True) as connection:
                stale = connection.execute(stale_rows).all()
                for job_id, worker in stale:
                    done = connection.execute(training_jobs.update().where(
                        training_jobs.c.id == job_id, training_jobs.c.status == "running",
                        training_jobs.c.heartbeat_at < cutoff).values(
                        status="failed", finished_at=utc_now(),
                        error=f"its worker {worker} stopped (no heartbeat for {self.stale_after_s:g}s)")).rowcount
                    if done:
                        connection.execute(training_job_logs.insert().values(
                            job_id=job_id, at=utc_now(), level="ERROR",
                            message=f"failed: worker {worker} stopped heartbeating"))
                return len(stale)

        return self.store._bounded(update)

    # -- the worker's side ----------------------------------------------------------------

    def claim(self, worker: str) -> JobRecord | None:
        """Take the oldest requested job for ``worker`` (status ``running``); None when there is none."""
        now = utc_now()
        query = (sa.select(training_jobs.c.id).where(training_jobs.c.status == "requested")
                 .order_by(training_jobs.c.created_at, training_jobs.c.id).limit(1))

        def look():
            with self.store._transaction() as connection:
                return connection.execute(query).first() is not None

        if not self.store._bounded(look):   # polls take no write lock while the queue is empty
            return None

        def take():
            with self.store._transaction(write=True) as connection:
                locked = query.with_for_update(skip_locked=True) if connection.dialect.name == "postgresql" \
                    else query
                job_id = connection.execute(locked).scalar()
                if job_id is None:
                    return None
                taken = connection.execute(training_jobs.update().where(
                    training_jobs.c.id == job_id, training_jobs.c.status == "requested").values(
                    status="running", worker=worker, started_at=now, heartbeat_at=now,
                    progress={"stage": "starting", "epoch": 0.0, "step": 0, "total_steps": 0, "loss": 0.0})
                ).rowcount
                if not taken:
                    return None
                return connection.execute(sa.select(training_jobs).where(
                    training_jobs.c.id == job_id)).mappings().first()

        row = self.store._bounded(take)
        return None if row is None else _job_from_row(row)

    def heartbeat(self, job_id: str, worker: str, progress: dict | None = None) -> bool | None:
        """Mark ``worker`` alive on its job (and store ``progress``); whether a stop was asked for.

        None when the job is no longer this worker's running job (reaped, or taken over).
        """
        values: dict[str, Any] = {"heartbeat_at": utc_now()}
        if progress is not None:
            values["progress"] = progress

        def update():
            with self.store._transaction(write=True) as connection:
                done = connection.execute(training_jobs.update().where(
                    training_jobs.c.id == job_id, training_jobs.c.worker == worker,
                    training_jobs.c.status == "running").values(**values)).rowcount
                if not done:
                    return None
                return bool(connection.execute(sa.select(training_jobs.c.stop_requested).where(
                    training_jobs.c.id == job_id)).scalar())

        return self.store._bounded(update)

    def finish(self, job_id: str, worker: str, status: str, *, progress: dict | None = None,
               evaluation: dict | None = None, artifact: dict | None = None,
               error: str | None = None) -> bool:
        """End ``worker``'s running job; False when it was not (any longer) this worker's."""
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        values: dict[str, Any] = {"status": status, "finished_at": utc_now(), "heartbeat_at": utc_now(),
                                  "evaluation": evaluation, "artifact": artifact, "error": error}
        if progress is not None:
            values["progress"] = progress

        def update():
            with self.store._transaction(write=True) as connection:
                return connection.execute(training_jobs.update().where(
                    training_jobs.c.id == job_id, training_jobs.c.worker == worker,
                    training_jobs.c.status == "running").values(**values)).rowcount

        return bool(self.store._bounded(update))

    def log(self, job_id: str, level: str, message: str) -> None:
        """Append a line to the job's log, dropping the oldest beyond ``max_log_lines``."""
        def insert():
            with self.store._transaction(write=True) as connection:
                connection.execute(training_job_logs.insert().values(job_id=job_id, at=utc_now(), level=level,
                                                                     message=message[:2000]))
                keep_from = connection.execute(
                    sa.select(training_job_logs.c.seq).where(training_job_logs.c.job_id == job_id)
                    .order_by(training_job_logs.c.seq.desc()).offset(self.limits.max_log_lines).limit(1)).scalar()
                if keep_from is not None:
                    connection.execute(training_job_logs.delete().where(
                        training_job_logs.c.job_id == job_id, training_job_logs.c.seq <= keep_from))

        self.store._bounded(insert)

    def dataset_records(self, client_id: str, names: list[str]) -> list[dict]:
        """The named datasets' records, in order; NOT_FOUND naming a dataset deleted since."""
        def select():
            with self.store._transaction() as connection:
                return {row.name: row.records for row in connection.execute(
                    sa.select(datasets.c.name, datasets.c.records).where(
                        datasets.c.client_id == client_id, datasets.c.name.in_(names)))}

        found = self.store._bounded(select)
        missing = [name for name in names if name not in found]
        if missing:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Dataset {shown(missing[0])} was deleted after the job "
                                                    "was requested", field="datasets")
        return [record for name in names for record in found[name]]


def _job_from_row(row) -> JobRecord:
    def when(value):
        return None if value is None else _utc(value)

    return JobRecord(id=row["id"], client_id=row["client_id"], status=row["status"],
                     created_at=_utc(row["created_at"]), spec=dict(row["spec"]), project_id=row["project_id"],
                     started_at=when(row["started_at"]), finished_at=when(row["finished_at"]),
                     heartbeat_at=when(row["heartbeat_at"]), worker=row["worker"],
                     stop_requested=bool(row["stop_requested"]), progress=row["progress"],
                     evaluation=row["evaluation"], artifact=row["artifact"], error=row["error"])

