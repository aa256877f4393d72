"""Training datasets: named sets of gliner2 training records, scoped to an API client.

Records are the gliner2 library's training JSONL form (``{"input": text,
"output": {"entities", "classifications", "json_structures", "relations", ...}}``,
what ``gliner2.training.data.TrainingDataset`` loads), validated by the library
itself (``InputExample.from_dict(...).validate()``) when a dataset is created:
a bad record is a 400 naming the record and the problem. A dataset is built
either from records the caller sends or from the caller's own feedback (the
history's training export: confirmed outputs as answered, corrected ones as
corrected). Every database call is bounded like the history's (see
:class:`~gliner_server.history.store.HistoryStore`).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..errors import ErrorKind, ServiceError, shown
from ..extras import installed
from .records import utc_now
from .store import _utc
from .tables import datasets

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TASK_KINDS = ("entities", "classifications", "json_structures", "relations")
SOURCES = ("upload", "feedback")


@dataclass(frozen=True)
class DatasetLimits:
    """Bounds per API client (the configuration's ``datasets`` section)."""

    max_records: int = 10_000          # records per dataset
    max_bytes: int = 32 << 20          # a dataset's records as JSON
    max_datasets: int = 100            # datasets per client


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    created_at: datetime
    source: str
    description: str
    record_count: int
    size_bytes: int
    task_counts: dict[str, int]
    records: list[dict] | None = field(default=None, repr=False)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ServiceError.invalid(f"Invalid dataset name {shown(name)}: 1-100 letters, digits, '.', '_' or '-', "
                                   "starting with a letter or digit", field="name")
    return name


def exists_already(name: str) -> ServiceError:
    return ServiceError.invalid(f"A dataset named {shown(name)} exists already; delete it or choose another name",
                                field="name")


def validate_records(records: list[Any], limits: DatasetLimits) -> tuple[int, dict[str, int]]:
    """The records' JSON size and per-task counts; 400 for the first record the library finds invalid.

    The library validates the records, so this needs gliner2 (the ``convert``
    extra); a lean install says so (503) instead of storing unchecked records.
    """
    if not installed("gliner2"):
        raise ServiceError(ErrorKind.UNAVAILABLE, "Datasets are validated by the gliner2 library, which this "
                           "installation lacks (the lean serving install); upload them to a server installed "
                           "with the convert extra")
    from gliner2.training.data import InputExample

    if not records:
        raise ServiceError.invalid("A dataset needs at least one record", field="records")
    if len(records) > limits.max_records:
        raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, f"{len(records)} records; a dataset holds at most "
                                                        f"{limits.max_records}", field="records")
    size = len(json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limits.max_bytes:
        raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, f"The records take {size} bytes as JSON; a dataset holds "
                                                        f"at most {limits.max_bytes}", field="records")
    counts = dict.fromkeys(TASK_KINDS, 0)
    for index, record in enumerate(records):
        where = f"records[{index}]"
        if not isinstance(record, dict) or not isinstance(record.get("input"), str) \
                or not isinstance(record.get("output"), dict):
            raise ServiceError.invalid(f"Invalid {where}: a record is {{\"input\": text, \"output\": {{...}}}}",
                                       field="records")
        try:
            problems = InputExample.from_dict(record).validate()
        except Exception as error:  # noqa: BLE001 - whatever the library chokes on is the client's record
            problems = [f"{type(error).__name__}: {error}"]
        if problems:
            raise ServiceError.invalid(f"Invalid {where}: {problems[0]}", field="records")
        for kind in TASK_KINDS:
            counts[kind] += bool(record["output"].get(kind))
    return size, {k: v for k, v in counts.items() if v}


class DatasetStore:
    """Datasets in the history database (``store``: the :class:`HistoryStore` whose bounds they share)."""

    def __init__(self, store, limits: DatasetLimits = DatasetLimits()):
        self.store = store
        self.limits = limits

    def create(self, client_id: str, name: str, records: list[Any], *, source: str = "upload",
               description: str = "") -> DatasetRecord:
        name = check_name(name)
        size, counts = validate_records(records, self.limits)
        dataset = DatasetRecord(name=name, created_at=utc_now(), source=source, description=description,
                                record_count=len(records), size_bytes=size, task_counts=counts, records=records)

        def insert():
            try:
                with self.store._transaction(write=True) as connection:
                    taken = connection.execute(sa.select(datasets.c.id).where(
                        datasets.c.client_id == client_id, datasets.c.name == name)).first()
                    if taken is not None:
                        raise exists_already(name)
                    owned = connection.execute(sa.select(sa.func.count()).select_from(datasets)
                                               .where(datasets.c.client_id == client_id)).scalar_one()
                    if owned >= self.limits.max_datasets:
                        raise ServiceError(ErrorKind.RATE_LIMITED, f"You have {owned} datasets, the most allowed; "
                                                                   "delete one first", field="name", retry_after_s=60)
                    connection.execute(datasets.insert().values(
                        id="ds_" + uuid.uuid4().hex, client_id=client_id, name=name, created_at=dataset.created_at,
                        source=source, description=description, record_count=dataset.record_count,
                        size_bytes=size, task_counts=counts, records=records))
            except sa.exc.IntegrityError:   # a concurrent create of the same name won the race
                raise exists_already(name) from None

        self.store._bounded(insert)
        return dataset

    def create_from_feedback(self, client_id: str, name: str, *, model_id: str | None = None,
                             project_id: str | None = None, since: datetime | None = None,
                             description: str = "") -> DatasetRecord:
        check_name(name)
        records = [json.loads(line) for page in self.store.export_training_pages(
            client_id=client_id, model_id=model_id, project_id=project_id, since=since) for line in page]
        if not records:
            raise ServiceError.invalid("No feedback matches: mark inferences correct or give corrected outputs "
                                       "(POST /inferences/{id}/feedback) first", field="name")
        return self.create(client_id, name, records, source="feedback", description=description)

    def list(self, client_id: str) -> list[DatasetRecord]:
        columns = [c for c in datasets.c if c.name != "records"]

        def select():
            with self.store._transaction() as connection:
                return connection.execute(sa.select(*columns).where(datasets.c.client_id == client_id)
                                          .order_by(datasets.c.created_at.desc(), datasets.c.name)).mappings().all()

        return [_from_row(row) for row in self.store._bounded(select)]

    def get(self, client_id: str, name: str, *, include_records: bool = False) -> DatasetRecord:
        columns = [c for c in datasets.c if include_records or c.name != "records"]

        def select():
            with self.store._transaction() as connection:
                return connection.execute(sa.select(*columns).where(
                    datasets.c.client_id == client_id, datasets.c.name == name)).mappings().first()

        row = self.store._bounded(select)
        if row is None:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Dataset not found: {shown(name)}", field="name")
        return _from_row(row)

    def delete(self, client_id: str, name: str) -> None:
        def remove():
            with self.store._transaction(write=True) as connection:
                return connection.execute(datasets.delete().where(
                    datasets.c.client_id == client_id, datasets.c.name == name)).rowcount

        if not self.store._bounded(remove):
            raise ServiceError(ErrorKind.NOT_FOUND, f"Dataset not found: {shown(name)}", field="name")


def _from_row(row) -> DatasetRecord:
    return DatasetRecord(name=row["name"], created_at=_utc(row["created_at"]), source=row["source"],
                         description=row["description"], record_count=row["record_count"],
                         size_bytes=row["size_bytes"], task_counts=dict(row["task_counts"] or {}),
                         records=row.get("records"))
