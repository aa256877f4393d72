"""Durable inference history: every inference, its feedback, training-data export.

``HistoryStore.open(url)`` (SQLite file or shared PostgreSQL, migrated on open)
records :class:`InferenceRecord` s, lists and fetches them per client, keeps
every :class:`FeedbackRecord` and exports current feedback as ``gliner2``
training JSONL (also the ``gliner2-export-feedback`` command).
"""
from .cli import DEFAULT_DATA_DIR, resolve_database_url
from .records import FeedbackRecord, InferenceRecord, new_feedback_id, new_inference_id, utc_now
from .store import MAX_PAGE_SIZE, HistoryStore

__all__ = [
    "DEFAULT_DATA_DIR", "FeedbackRecord", "HistoryStore", "InferenceRecord", "MAX_PAGE_SIZE",
    "new_feedback_id", "new_inference_id", "resolve_database_url", "utc_now",
]
