"""gliner.v1.TrainingService: datasets of training records and training jobs, scoped to the caller.

The jobs themselves run in ``gliner2-train-worker``; this service only queues,
reports and stops them.
"""
from __future__ import annotations

from datetime import UTC

from google.protobuf import json_format

from gliner_client.v1 import training_service_pb2 as training_pb2
from gliner_client.v1 import training_service_pb2_grpc as training_grpc

from ..errors import ErrorKind, ServiceError, shown
from ..history.datasets import DatasetRecord, DatasetStore
from ..training.jobs import JOB_ID, JobRecord, JobStore, validate_request
from .admission import Admission
from .auth import ApiKeys
from .calls import rpc
from .history_service import _timestamp
from .service import caller_of


def dataset_to_proto(dataset: DatasetRecord, *, records: bool = True) -> training_pb2.Dataset:
    message = training_pb2.Dataset(
        name=dataset.name, created_at=_timestamp(dataset.created_at), record_count=dataset.record_count,
        size_bytes=dataset.size_bytes, source=dataset.source, status="ready", description=dataset.description,
        task_counts=dataset.task_counts)
    for record in (dataset.records or ()) if records else ():
        message.records.add().update(record)
    return message


def _scores(message: training_pb2.Scores, values: dict | None) -> None:
    for name, value in (values or {}).items():
        setattr(message, name, value)


def evaluation_to_proto(evaluation: dict) -> training_pb2.Evaluation:
    message = training_pb2.Evaluation(records=evaluation["records"])
    _scores(message.base, evaluation["base"])
    _scores(message.trained, evaluation["trained"])
    for label, scores in evaluation["labels"].items():
        entry = message.labels[label]
        _scores(entry.base, scores["base"])
        _scores(entry.trained, scores["trained"])
        entry.support = scores["support"]
    return message


def job_to_proto(job: JobRecord) -> training_pb2.TrainingJob:
    spec = job.spec
    message = training_pb2.TrainingJob(
        id=job.id, status=job.status, base_model=spec["base_model"],
        datasets=[training_pb2.DatasetRef(name=name) for name in spec["datasets"]],
        model_name=spec.get("model_name") or job.id, training_type=spec["training_type"],
        nr_epochs=spec["nr_epochs"], learning_rate=spec["learning_rate"], project_id=job.project_id or "",
        held_out_fraction=spec["held_out_fraction"], batch_size=spec["batch_size"],
        created_at=_timestamp(job.created_at), error=job.error or "", stop_requested=job.stop_requested,
        worker=job.worker or "")
    for name in ("started_at", "finished_at"):
        if getattr(job, name) is not None:
            getattr(message, name).CopyFrom(_timestamp(getattr(job, name)))
    progress = job.progress or {}
    if progress:
        message.progress.CopyFrom(training_pb2.TrainingProgress(
            epoch=progress.get("epoch", 0.0), step=progress.get("step", 0),
            total_steps=progress.get("total_steps", 0), loss=progress.get("loss", 0.0),
            stage=progress.get("stage", "")))
        message.train_records = progress.get("train_records", 0)
        message.held_out_records = progress.get("held_out_records", 0)
    if job.status == "complete" and job.evaluation:
        message.evaluation.CopyFrom(evaluation_to_proto(job.evaluation))
        trained = job.evaluation["trained"]
        message.precision, message.recall, message.f1 = trained["precision"], trained["recall"], trained["f1"]
    return message


class TrainingService(training_grpc.TrainingServiceServicer):
    """Every call takes one of the history calls' admission slots (they wait on the same database).

    ``models`` (the model registry) says which base models exist.
    """

    def __init__(self, datasets: DatasetStore, jobs: JobStore, keys: ApiKeys, admission: Admission | None = None,
                 *, models=None):
        self.datasets = datasets
        self.keys = keys
        self.admission = admission or Admission(4, "history calls")
        self.jobs = jobs
        self.models = models

    def _base(self, client: str, base_model: str) -> dict:
        """Where the base model comes from: a registered model, or one of the caller's complete jobs."""
        if not base_model:
            raise ServiceError.invalid("base_model is required: a model id from GET /v1/models", field="base_model")
        if JOB_ID.match(base_model):
            job = self.jobs.get(client, base_model)   # another client's job: 404
            if job.status != "complete":
                raise ServiceError.invalid(f"Training job {base_model} is {job.status}; only a complete job can "
                                           "be a base model", field="base_model")
            return {"job": base_model}
        try:
            spec = self.models.spec(base_model, client_id=client) if self.models is not None else None
        except ServiceError:   # NOT_FOUND
            spec = None
        if spec is None:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Unknown base_model {shown(base_model)}: use a model id from "
                                                    "GET /v1/models", field="base_model")
        return {"model": spec.id, "source": spec.source, "adapter": spec.adapter}

    @rpc
    def CreateTrainingJob(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            base = self._base(client, request.base_model)
            job_request = validate_request(
                base_model=request.base_model, base=base, dataset_names=[d.name for d in request.datasets],
                model_name=request.model_name, training_type=request.training_type, nr_epochs=request.nr_epochs,
                learning_rate=request.learning_rate, project_id=request.project_id or None,
                held_out_fraction=request.held_out_fraction if request.HasField("held_out_fraction") else None,
                batch_size=request.batch_size, limits=self.jobs.limits)
            job = self.jobs.create(client, job_request)
        return job_to_proto(job)

    @rpc
    def ListTrainingJobs(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            found = self.jobs.list(client, status=request.status or None, project_id=request.project_id or None)
        return training_pb2.ListTrainingJobsResponse(jobs=[job_to_proto(job) for job in found])

    @rpc
    def GetTrainingJob(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            return job_to_proto(self.jobs.get(client, request.id))

    @rpc
    def GetTrainingJobLogs(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            job, lines = self.jobs.logs(client, request.id, tail=request.tail)
        return training_pb2.GetTrainingJobLogsResponse(
            id=job.id, status=job.status,
            logs=[training_pb2.TrainingLogLine(time=_timestamp(line.at), level=line.level, message=line.message)
                  for line in lines])

    @rpc
    def StopTrainingJob(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            return job_to_proto(self.jobs.stop(client, request.id))

    def _client(self, context, call) -> str:
        return caller_of(self.keys, context, call).client_id

    @rpc
    def CreateDataset(self, request, context, call):
        client = self._client(context, call)
        records = [json_format.MessageToDict(r) for r in request.records]
        with self.admission.slot():
            dataset = self.datasets.create(client, request.name, records, description=request.description)
        return training_pb2.CreateDatasetResponse(dataset=dataset_to_proto(dataset, records=False))

    @rpc
    def CreateDatasetFromFeedback(self, request, context, call):
        client = self._client(context, call)
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        with self.admission.slot():
            dataset = self.datasets.create_from_feedback(
                client, request.name, model_id=request.model_id or None, project_id=request.project_id or None,
                since=since, description=request.description)
        return training_pb2.CreateDatasetFromFeedbackResponse(dataset=dataset_to_proto(dataset, records=False))

    @rpc
    def ListDatasets(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            return training_pb2.ListDatasetsResponse(datasets=[dataset_to_proto(d) for d in
                                                               self.datasets.list(client)])

    @rpc
    def GetDataset(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            dataset = self.datasets.get(client, request.name, include_records=request.include_records)
        return training_pb2.GetDatasetResponse(dataset=dataset_to_proto(dataset))

    @rpc
    def DeleteDataset(self, request, context, call):
        client = self._client(context, call)
        with self.admission.slot():
            self.datasets.delete(client, request.name)
        return training_pb2.DeleteDatasetResponse(name=request.name, deleted=True)
