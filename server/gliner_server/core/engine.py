"""The inference engine: a normalised request in, library-formatted results out."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional, Protocol

from ..errors import ErrorKind, ServiceError
from .results import TypedResult, typed_result
from .schema import ExtractionSchema, to_library_schema

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class OutputOptions:
    """How the library formats results (the /gliner-2 flags)."""

    format_results: bool = True
    include_confidence: bool = False
    include_spans: bool = False


# Typed results need scores and offsets, so they are derived from this form.
FULL_OUTPUT = OutputOptions(format_results=True, include_confidence=True, include_spans=True)


@dataclass(frozen=True)
class ExtractionRequest:
    texts: tuple[str, ...]
    schema: ExtractionSchema
    threshold: float = DEFAULT_THRESHOLD
    output: OutputOptions = OutputOptions()
    model_id: str = ""


@dataclass(frozen=True)
class ExtractionOutcome:
    texts: tuple[str, ...]
    results: list[Any]      # one JSON-ready library result per text
    model_id: str
    latency_ms: float       # model time only

    def typed(self, schema: ExtractionSchema) -> list[TypedResult]:
        """Typed results; only meaningful when the request asked for FULL_OUTPUT."""
        return [typed_result(r, schema, t) for r, t in zip(self.results, self.texts)]


class ServableModel(Protocol):
    model_id: str
    model: Any

    def extract(self, texts, schema, *, threshold, format_results,
                include_confidence, include_spans) -> list: ...


class ModelSource(Protocol):
    """Where models come from: the registry (lazy, bounded) or a fixed mapping."""

    default_model_id: str

    def get(self, model_id: str = "") -> ServableModel: ...


class StaticModels:
    """A fixed set of already-loaded models."""

    def __init__(self, models: dict[str, ServableModel], default_model_id: str):
        if default_model_id not in models:
            raise ValueError(f"default model {default_model_id!r} is not among the loaded models")
        self.models = dict(models)
        self.default_model_id = default_model_id

    def get(self, model_id: str = "") -> ServableModel:
        model = self.models.get(model_id or self.default_model_id)
        if model is None:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Unknown model_id: {model_id}")
        return model

    def specs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(id=i, kind="base", description="") for i in self.models]

    def loaded_ids(self) -> list[str]:
        return list(self.models)


class InferenceEngine:
    """Validates requests, routes them to a model and runs the library on them."""

    def __init__(self, models: ModelSource, *, max_text_chars: int = 100_000, max_batch_texts: int = 64):
        self.models = models
        self.max_text_chars = max_text_chars
        self.max_batch_texts = max_batch_texts

    @classmethod
    def of(cls, model: ServableModel, **options) -> "InferenceEngine":
        """An engine over one loaded model (tests, benchmarks)."""
        return cls(StaticModels({model.model_id: model}, model.model_id), **options)

    def model(self, model_id: str = "") -> ServableModel:
        return self.models.get(model_id)

    def validate_texts(self, texts) -> tuple[str, ...]:
        if not texts:
            raise ServiceError.invalid("Missing required field: text", field="text")
        if len(texts) > self.max_batch_texts:
            raise ServiceError.invalid(
                f"Too many texts: {len(texts)} (at most {self.max_batch_texts} per request)", field="text")
        for index, text in enumerate(texts):
            where = "text" if len(texts) == 1 else f"text[{index}]"
            if not isinstance(text, str):
                raise ServiceError.invalid(f"{where} must be a string", field="text")
            if not text.strip():
                raise ServiceError.invalid(f"{where} must not be empty", field="text")
            if len(text) > self.max_text_chars:
                raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE,
                                   f"{where} has {len(text)} characters; at most {self.max_text_chars} are accepted",
                                   field="text")
        return tuple(texts)

    def run(self, request: ExtractionRequest) -> ExtractionOutcome:
        texts = self.validate_texts(request.texts)
        if not 0.0 <= request.threshold <= 1.0:
            raise ServiceError.invalid(f"threshold must be between 0 and 1, got {request.threshold}",
                                       field="threshold")
        model = self.model(request.model_id)
        try:
            library_schema = to_library_schema(request.schema, model.model)
        except (ValueError, TypeError) as error:
            raise ServiceError.invalid(f"Invalid schema: {error}", field="schema") from None
        started = time.perf_counter()
        try:
            results = model.extract(
                list(texts), library_schema, threshold=request.threshold,
                format_results=request.output.format_results,
                include_confidence=request.output.include_confidence,
                include_spans=request.output.include_spans,
            )
        except ServiceError:
            raise
        except Exception:
            logger.exception("inference failed for model %s", model.model_id)
            raise ServiceError(ErrorKind.SERVER_ERROR, "Internal inference error; retry with backoff") from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        return ExtractionOutcome(texts=texts, results=[to_json(r) for r in results], model_id=model.model_id,
                                 latency_ms=latency_ms)


def to_json(value: Any) -> Any:
    """Library output → plain JSON types (tuples become lists, as on the hosted API)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) or value is None or isinstance(value, (str, bool, int)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def threshold_or_default(value: Optional[float]) -> float:
    return DEFAULT_THRESHOLD if value is None else float(value)
