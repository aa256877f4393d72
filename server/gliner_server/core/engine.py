"""The inference engine: a normalised request in, library-formatted results out."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

from ..errors import ErrorKind, ServiceError
from .limits import Limits, Window, check_schema, schema_size
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
class CallContext:
    """What the transport tells the core about the caller: when it stops waiting, and how it says it left."""

    deadline: float | None = None        # time.monotonic() after which no one waits for the answer
    cancellation: Any = None                # has add_callback(fn): fn runs when the caller goes away (gRPC context)
    request_id: str | None = None        # the call's id (x-request-id): logs, history, idempotent retries
    # called once the call's model passes are queued (validated, model loaded, admitted): a streaming
    # answer can open then and still get a proper status for everything refused before
    on_started: Callable[[], None] | None = None

    def timeout(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


NO_CONTEXT = CallContext()


@dataclass(frozen=True)
class ExtractionOutcome:
    texts: tuple[str, ...]
    results: list[Any]      # one JSON-ready library result per text
    model_id: str
    latency_ms: float       # model time: how long the model passes carrying this request ran
    chunks: tuple[int, ...] = ()   # per text: 1, or how many windows a long text was processed in
    queue_ms: float = 0.0   # how long the request waited for its model pass
    tokens: int = 0         # subword tokens the encoder ran for it (texts and schema prompts; 0 if unknown)

    @property
    def chunked(self) -> bool:
        return any(n > 1 for n in self.chunks)

    def typed(self, schema: ExtractionSchema) -> list[TypedResult]:
        """Typed results; only meaningful when the request asked for FULL_OUTPUT."""
        return [typed_result(r, schema, t) for r, t in zip(self.results, self.texts)]


@dataclass(frozen=True)
class ModelCall:
    """One request's work for a model: texts with the library's schema and output options."""

    texts: tuple[str, ...]
    schema: Any                     # the library's Schema
    threshold: float
    output: OutputOptions
    plan: Any = None                # chunks per text, for texts over the window (ServableModel.plan)


@dataclass(frozen=True)
class Timing:
    queue_ms: float = 0.0
    model_ms: float = 0.0
    tokens: int = 0


class PendingResult(Protocol):
    def result(self, timeout: float | None) -> tuple[list, Timing]: ...

    def abandon(self) -> None: ...


class ServableModel(Protocol):
    model_id: str
    model: Any

    def start(self, calls: Sequence[ModelCall], cancellation=None) -> list[PendingResult]:
        """Queue the calls together (all of them, or RATE_LIMITED); each result is waited for apart."""
        ...

    def plan(self, texts, window: Window): ...

    def count_tokens(self, text: str) -> int: ...


class ModelSource(Protocol):
    """Where models come from: the registry (lazy, bounded) or a fixed mapping."""

    default_model_id: str

    def lease(self, model_id: str = "", deadline: float | None = None):
        """A context manager holding the model (loaded, kept in memory) while the block runs."""
        ...

    def check(self, model_id: str = "") -> None:
        """NOT_FOUND unless ``model_id`` ("" is the default) names a model; loads nothing."""
        ...


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

    @contextmanager
    def lease(self, model_id: str = "", deadline: float | None = None) -> Iterator[ServableModel]:
        yield self.get(model_id)

    def check(self, model_id: str = "") -> None:
        self.get(model_id)

    def specs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(id=i, kind="base", description="") for i in self.models]

    def loaded_ids(self) -> list[str]:
        return list(self.models)


class InferenceEngine:
    """Validates requests against the limits, routes them to a model and runs the library on them."""

    def __init__(self, models: ModelSource, *, limits: Limits = Limits()):
        self.models = models
        self.limits = limits

    @classmethod
    def of(cls, model: ServableModel, **options) -> InferenceEngine:
        """An engine over one loaded model (tests, benchmarks)."""
        return cls(StaticModels({model.model_id: model}, model.model_id), **options)

    def validate_texts(self, texts) -> tuple[str, ...]:
        if not texts:
            raise ServiceError.invalid("Missing required field: text", field="text")
        if len(texts) > self.limits.max_texts:
            raise ServiceError.invalid(
                f"Too many texts: {len(texts)} (at most {self.limits.max_texts} per request)", field="text")
        for index, text in enumerate(texts):
            where = "text" if len(texts) == 1 else f"text[{index}]"
            if not isinstance(text, str):
                raise ServiceError.invalid(f"{where} must be a string", field="text")
            if not text.strip():
                raise ServiceError.invalid(f"{where} must not be empty", field="text")
            if len(text) > self.limits.max_text_chars:
                raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE,
                                   f"{where} has {len(text)} characters; at most {self.limits.max_text_chars} "
                                   "are accepted", field="text")
        return tuple(texts)

    def run(self, request: ExtractionRequest, call: CallContext = NO_CONTEXT) -> ExtractionOutcome:
        [outcome] = self.run_many([request], call)
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    def run_many(self, requests: Sequence[ExtractionRequest | ServiceError], call: CallContext = NO_CONTEXT,
                 *, model_id: str | None = None) -> list[ExtractionOutcome | ServiceError]:
        """Several requests for one model, run together (they share passes), each answered apart.

        An item may already be a ServiceError (a dialect found it invalid): it
        stays in its place. A request that is invalid (400) or too large (413)
        gets its error in its place while the others run; anything else (an
        unknown model, a full queue, the deadline, a failed pass) fails the
        whole call. ``model_id`` defaults to the requests' (they share one).
        """
        runnable = [r for r in requests if isinstance(r, ExtractionRequest)]
        ids = {r.model_id for r in runnable} | ({model_id} if model_id is not None else set())
        if len(ids) > 1:
            raise ValueError("run_many takes requests for one model")
        target = ids.pop() if ids else ""
        self.models.check(target)   # an unknown id is a 404 for the whole call
        if not runnable:
            return list(requests)
        with self.models.lease(target, deadline=call.deadline) as model:
            prepared: list[ModelCall | ServiceError] = []
            for request in requests:
                if isinstance(request, ServiceError):
                    prepared.append(request)
                    continue
                try:
                    prepared.append(self._prepare(model, request))
                except ServiceError as error:
                    if error.kind not in (ErrorKind.INVALID_REQUEST, ErrorKind.PAYLOAD_TOO_LARGE) \
                            or len(requests) == 1:
                        raise
                    prepared.append(error)
            calls = [p for p in prepared if isinstance(p, ModelCall)]
            waiting = model.start(calls, cancellation=call.cancellation) if calls else []
            if call.on_started is not None:
                call.on_started()
            outcomes: list[ExtractionOutcome | ServiceError] = []
            try:
                at = 0
                for item in prepared:
                    if isinstance(item, ServiceError):
                        outcomes.append(item)
                        continue
                    results, timing = waiting[at].result(call.timeout())
                    at += 1
                    chunks = tuple(len(p) for p in item.plan) if item.plan is not None else (1,) * len(item.texts)
                    outcomes.append(ExtractionOutcome(
                        texts=item.texts, results=[to_json(r) for r in results], model_id=model.model_id,
                        latency_ms=timing.model_ms, chunks=chunks, queue_ms=timing.queue_ms, tokens=timing.tokens))
            except ServiceError:
                for other in waiting:
                    other.abandon()
                raise
            except Exception:
                for other in waiting:
                    other.abandon()
                logger.exception("inference failed for model %s", model.model_id)
                raise ServiceError(ErrorKind.SERVER_ERROR, "Internal inference error; retry with backoff") from None
            return outcomes

    def _prepare(self, model: ServableModel, request: ExtractionRequest) -> ModelCall:
        texts = self.validate_texts(request.texts)
        if not 0.0 <= request.threshold <= 1.0:
            raise ServiceError.invalid(f"threshold must be between 0 and 1, got {request.threshold}",
                                       field="threshold")
        check_schema(request.schema, self.limits)
        try:
            library_schema = to_library_schema(request.schema, model.model)
        except (ValueError, TypeError) as error:
            raise ServiceError.invalid(f"Invalid schema: {error}", field="schema") from None
        plan = self._plan(model, texts, request.schema)
        if plan is not None and not request.output.format_results:
            raise ServiceError.invalid("format_results=false is not available for texts longer than the "
                                       "model's window (they are processed in chunks)", field="format_results")
        return ModelCall(texts=texts, schema=library_schema, threshold=request.threshold, output=request.output,
                         plan=plan)

    def _plan(self, model, texts: tuple[str, ...], schema: ExtractionSchema):
        """Chunks per text when a text is over the window (or 413, per the policy); every pass within its tokens."""
        limits = self.limits
        plan = model.plan(texts, limits.window)
        if plan is not None and limits.long_text == "reject":
            index = next(i for i, chunks in enumerate(plan) if len(chunks) > 1)
            where = "text" if len(texts) == 1 else f"text[{index}]"
            raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE,
                               f"{where} is longer than the model's window of {limits.window_words} words; this "
                               "server rejects long texts instead of chunking them: split it", field="text")
        items, _ = schema_size(schema)
        prompt_words = list(_prompt_words(schema))
        # A subword token covers at least one UTF-8 byte (byte fallback) and the prompt adds
        # markers per item: most passes are surely within the limit without tokenising them.
        markup = 2 * items + 8
        bound = sum(len(w.encode()) + 1 for w in prompt_words) + markup
        passes = [c.text for chunks in plan for c in chunks] if plan is not None else texts
        if all(len(t.encode()) + bound <= limits.max_pass_tokens for t in passes):
            return plan
        prompt = model.count_tokens(" ".join(prompt_words)) + markup
        for text in passes:
            tokens = model.count_tokens(text) + prompt
            if tokens > limits.max_pass_tokens:
                raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE,
                                   f"A text (or a window of one) and its schema make {tokens} subword tokens; at "
                                   f"most {limits.max_pass_tokens} go through the model at once (very long words, "
                                   "or a very large schema)", field="text")
        return plan


def _prompt_words(schema: ExtractionSchema):
    """Every name, label, choice and description of a schema: the words of its prompt."""
    for entity in schema.entities:
        yield from (entity.name, entity.description or "")
    for task in schema.classifications:
        yield task.name
        yield from task.labels
        yield from (task.label_descriptions or {}).values()
    for structure in schema.structures:
        yield structure.name
        for field in structure.fields:
            yield from (field.name, *(field.choices or ()), field.description or "")
    for relation in schema.relations:
        yield from (relation.name, relation.description or "")


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


def threshold_or_default(value: float | None) -> float:
    return DEFAULT_THRESHOLD if value is None else float(value)
