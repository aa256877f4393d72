"""gliner.v1.TrainingService: datasets of training records, scoped to the caller (training jobs build on them)."""
from __future__ import annotations

from datetime import timezone

from google.protobuf import json_format

from gliner_client.v1 import training_service_pb2 as training_pb2
from gliner_client.v1 import training_service_pb2_grpc as training_grpc

from ..history.datasets import DatasetRecord, DatasetStore
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


class TrainingService(training_grpc.TrainingServiceServicer):
    """Every call takes one of the history calls' admission slots (they wait on the same database)."""

    def __init__(self, datasets: DatasetStore, keys: ApiKeys, admission: Admission | None = None):
        self.datasets = datasets
        self.keys = keys
        self.admission = admission or Admission(4, "history calls")

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
        since = request.since.ToDatetime(tzinfo=timezone.utc) if request.HasField("since") else None
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
