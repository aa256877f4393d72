"""The history's records: plain frozen dataclasses, no database types.

Ids are ``inf_``/``fb_`` followed by a 26-character ULID (48-bit millisecond
timestamp, 80 random bits, Crockford base32): unique across replicas without a
shared counter, and sortable by creation time.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

VERDICTS = ("correct", "incorrect")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid() -> str:
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_inference_id() -> str:
    """A fresh, time-sortable inference id: ``inf_`` + 26-char ULID."""
    return "inf_" + _ulid()


def new_feedback_id() -> str:
    """A fresh, time-sortable feedback id: ``fb_`` + 26-char ULID."""
    return "fb_" + _ulid()


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what ``created_at`` holds)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class InferenceRecord:
    """One inference on any route. ``text`` and ``output`` are None in privacy mode."""

    id: str
    created_at: datetime
    route: str
    model_id: str
    task: str
    client_id: str
    text: str | None
    schema: dict | None
    parameters: dict | None
    output: Any | None
    latency_ms: float
    project_id: str | None = None
    training_job_id: str | None = None
    privacy: bool = False
    request_id: str | None = None          # the call's request id (x-request-id), shared by its texts
    dedupe_key: str | None = None          # set for calls with a request id: a retry is stored once


@dataclass(frozen=True)
class FeedbackRecord:
    """One verdict on an inference; the latest one per inference is the current one."""

    id: str
    inference_id: str
    client_id: str
    verdict: str
    corrected_output: Any | None
    created_at: datetime
