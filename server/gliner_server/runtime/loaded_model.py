"""A GLiNER2 checkpoint loaded for serving: library model + OpenVINO encoder."""
from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.engine import ModelCall, OutputOptions, Timing
from ..errors import ErrorKind, ServiceError
from ..lean.openvino_compile import PRECISIONS, ir_weights
from . import long_text
from .batcher import NO_EVENTS, BatchEvents, BatchPolicy, BatchScheduler, Job, JobSpec
from .checkpoint import CheckpointUnavailable, content_digest, resolve_checkpoint

# What loads a model (see load_model): "auto" serves a converted bundle with the lean runtime
# (gliner_server.lean, no PyTorch) wherever it can run the model, and the gliner2 library with an
# OpenVINO encoder otherwise; "library" always takes the library path.
RUNTIMES = ("auto", "library")

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """One servable model. ``start`` / ``extract`` are safe to call from many threads.

    Calls from concurrent requests are batched together by the model's
    :class:`~.batcher.BatchScheduler` (one worker thread, created on first use),
    which is also what keeps the library single-threaded per model.
    :meth:`close` stops that worker and lets go of the library model, so that
    an unloaded model's memory is freed at once (the registry calls it when the
    last request using an evicted model is done).
    """

    model_id: str
    model: Any                      # a lean BundleModel, or a gliner2 SpanExtractor / BoundaryExtractor
    precision: str                  # one of PRECISIONS, or torch (reference, no OpenVINO)
    architecture: str
    load_seconds: float
    import_seconds: float = 0.0     # of load_seconds: importing gliner2 (torch, transformers) if not yet imported
    runtime: str = "library"        # "lean" (a bundle, no PyTorch) or "library" (gliner2 with OpenVINO encoder)
    convert_seconds: float = 0.0    # of load_seconds: converting the checkpoint into a bundle (first use only)
    memory_bytes: int = 0           # resident memory it takes: what loading it grew the process by (or weights_bytes)
    weights_bytes: int = 0          # its weights: PyTorch parameters left plus the IR's, see _footprint
    batching: BatchPolicy = BatchPolicy()
    events: BatchEvents = NO_EVENTS
    _scheduler: BatchScheduler | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _counter: Any = field(default=None, init=False, repr=False)          # a tokenizer for request threads
    _counter_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def scheduler(self) -> BatchScheduler:
        with self._lock:
            if self._scheduler is None:
                if self.model is None:
                    raise ServiceError(ErrorKind.UNAVAILABLE, f"Model {self.model_id} was unloaded; retry",
                                       retry_after_s=1)
                self._scheduler = BatchScheduler(self._run_batch, self.batching, name=self.model_id,
                                                 events=self.events)
            return self._scheduler

    def start(self, calls: Sequence[ModelCall], cancellation=None) -> list[PendingExtraction]:
        """Queue ``calls`` together on the model's scheduler; wait for each with ``result(timeout)``."""
        specs, merges = [], []
        for call in calls:
            chars = _schema_chars(call.schema)
            out = call.output
            if call.plan is None:
                specs.append(JobSpec(list(call.texts), call.schema, (call.threshold, out.format_results,
                                     out.include_confidence, out.include_spans, None), chars))
                merges.append(None)
            else:
                # As the library's batch_extract_long: every chunk with scores and offsets, then merged.
                chunk_texts = [chunk.text for chunks in call.plan for chunk in chunks]
                specs.append(JobSpec(chunk_texts, call.schema, (call.threshold, True, True, True, call.plan.words),
                                     chars))
                merges.append(call)
        scheduler = self.scheduler()
        jobs = scheduler.enqueue(specs, cancellation=cancellation)
        return [PendingExtraction(self, scheduler, job, merge) for job, merge in zip(jobs, merges)]

    def extract(self, texts: list[str], schema, *, threshold: float, format_results: bool,
                include_confidence: bool, include_spans: bool, timeout: float | None = None,
                cancellation=None, plan=None) -> list[dict]:
        """Results for ``texts``; with a ``plan`` (see :meth:`plan`), chunk by chunk, merged per text.

        ``timeout`` and ``cancellation`` bound the wait for the model (see
        :meth:`.batcher.BatchScheduler.submit`): work still queued when either
        fires is dropped.
        """
        if plan is not None and not format_results:
            raise ServiceError.invalid("format_results=false is not available for texts longer than the "
                                       "model's window (they are processed in chunks)", field="format_results")
        output = OutputOptions(format_results=format_results, include_confidence=include_confidence,
                               include_spans=include_spans)
        [pending] = self.start([ModelCall(tuple(texts), schema, threshold, output, plan)], cancellation)
        return pending.result(timeout)[0]

    def plan(self, texts, window: long_text.Window):
        """None when every text fits the window; else each text's chunks (a short text is one chunk)."""
        # A word is at least one character: most texts need no word split to be known to fit.
        if all(len(text) <= window.words or long_text.word_count(self.model, text) <= window.words
               for text in texts):
            return None
        return long_text.ChunkPlan([long_text.split(self.model, text, window) for text in texts], window.words)

    def count_tokens(self, text: str) -> int:
        """Subword tokens of ``text`` by the model's tokenizer (without special tokens).

        Request threads count while the model's worker tokenises with the
        library's fast tokenizer, whose Rust core refuses a call that overlaps
        another one changing its settings ("Already borrowed"). So request
        threads count with a copy of their own, one at a time (counting is rare:
        only texts that may exceed a pass's token limit; see
        tests/test_tokenizer_threads.py).
        """
        if hasattr(self.model, "count_tokens"):   # the lean runtime's tokenizer is safe across threads
            return self.model.count_tokens(text)
        with self._counter_lock:
            if self._counter is None:
                self._counter = copy.deepcopy(self.model.processor.tokenizer)
            return len(self._counter(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        """Stop the scheduler's worker and drop the library model, freeing its memory now.

        The heads this runtime installs are methods bound to the model's own
        modules (``fast_heads``, ``openvino_heads``): reference cycles, which
        Python frees only when its cycle collector happens to run (rarely, since
        a model is few, large objects). They are removed here, so the model goes
        with its last reference; the registry collects what else is left.
        """
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            model, self.model = self.model, None
            self._counter = None
        if scheduler is not None:
            scheduler.close()
        if model is not None and hasattr(model, "modules"):
            for module in list(model.modules()):
                for name, value in list(vars(module).items()):
                    if isinstance(value, types.MethodType) and value.__self__ is module:
                        object.__delattr__(module, name)

    def _run_batch(self, texts, schemas, options, chunk: int):
        # max_len: the word cap of chunked texts (see long_text.ChunkPlan), None otherwise
        threshold, format_results, include_confidence, include_spans, max_len = options
        model = self.model
        if model is None:
            raise ServiceError(ErrorKind.UNAVAILABLE, f"Model {self.model_id} was unloaded; retry", retry_after_s=1)
        results = model.batch_extract(
            list(texts), list(schemas), batch_size=chunk, threshold=threshold,
            format_results=format_results, include_confidence=include_confidence,
            include_spans=include_spans, max_len=max_len,
        )
        counts = getattr(model, "last_token_counts", None)
        if counts is None:
            counts = getattr(getattr(model, "encoder", None), "last_token_counts", None)
        if counts is not None and len(counts) == len(texts):
            return results, counts
        return results


class PendingExtraction:
    """One call's queued job: ``result(timeout)`` waits for it, merges chunked texts, and tells its timing."""

    def __init__(self, model: LoadedModel, scheduler: BatchScheduler, job: Job, merge: ModelCall | None):
        self.model, self.scheduler, self.job, self.merge = model, scheduler, job, merge

    def result(self, timeout: float | None) -> tuple[list, Timing]:
        results = self.scheduler.wait(self.job, timeout)
        job = self.job
        timing = Timing(queue_ms=job.queue_seconds * 1000.0, model_ms=job.model_seconds * 1000.0,
                        tokens=sum(job.token_counts) if job.token_counts else 0)
        if self.merge is None:
            return results, timing
        call = self.merge
        merged = long_text.merge_all(self.model.model, call.schema, call.texts, call.plan, results,
                                     include_confidence=call.output.include_confidence,
                                     include_spans=call.output.include_spans)
        return merged, timing

    def abandon(self) -> None:
        self.scheduler.abandon([self.job])


def _schema_chars(schema) -> int:
    """Characters of the schema's labels and descriptions: its share of the prompt, for batching."""
    if isinstance(schema, tuple):   # the lean runtime's (schema_dict, metadata)
        schema = schema[0]
    built = schema.build() if hasattr(schema, "build") else schema
    return len(str(built))


def _ir_dir(cache_dir: Path, digest: str, kind: str) -> Path:
    """Where converted IR of the weights ``digest`` lives: ``kind`` is a weight format or ``heads``."""
    import openvino as ov

    from .openvino_encoder import EXPORT_REVISION

    version = ov.get_version().split("-")[0]
    return cache_dir / "ir" / f"{digest}-{kind}-e{EXPORT_REVISION}-ov{version}"


def _ir_path(cache_dir: Path, digest: str, precision: str) -> Path:
    # f32 and bf16 share the fp32 IR (see IR_WEIGHTS)
    return _ir_dir(cache_dir, digest, ir_weights(precision)) / "encoder.xml"


def merge_adapter(model, adapter: Path) -> None:
    """Apply the LoRA adapter in ``adapter`` to ``model`` and fold it into the weights.

    The library's ``load_lora_adapter`` reads both adapter formats (PEFT's
    ``adapter_model.safetensors``, which the gliner2 trainer writes, and the legacy
    ``adapter_weights.safetensors``) and injects LoRA layers into ``model`` in
    place. Its merge helpers only act on the ``PeftModel`` wrapper it discards, so
    each injected layer is merged (``W += scale * B @ A``) and swapped for its base
    layer here, as ``PeftModel.merge_and_unload`` would: the encoder exported to
    OpenVINO then carries the deltas, and adapted heads run as plain layers.
    """
    from gliner2.training.lora import LoRALayer, load_lora_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        layers = load_lora_adapter(model, adapter)
    if not layers:
        raise ValueError(f"the adapter in {adapter} targets no layer of this model")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _resident_growth(before: int) -> int:
    """What loading took in resident memory: OpenVINO's compiled copies of the weights, the heads, buffers.

    The weights on disk undercount it (the CPU plugin repacks the encoder's
    weights, so a model holds about twice their size): this is what the
    registry's ``max_loaded_bytes`` is measured against. Loads run one at a
    time on the registry's loader thread, so the growth is this model's.
    """
    import gc

    from .registry import release_freed_memory

    gc.collect()               # the PyTorch encoder a conversion dropped
    release_freed_memory()
    return max(0, resident_bytes() - before) if before else 0


def _footprint(model, ir_path: Path | None) -> int:
    """Bytes of the PyTorch parameters and buffers still in use plus the IR weights.

    Once the encoder is replaced by OpenVINO, its PyTorch weights are gone and the
    compiled model holds about the size of the IR's ``.bin``; tokenizer and
    runtime scratch buffers are small and not counted.
    """
    tensors = [*model.parameters(), *model.buffers()]
    torch_bytes = sum(t.numel() * t.element_size() for t in tensors)
    return torch_bytes + (ir_path.with_suffix(".bin").stat().st_size if ir_path else 0)


def load_library_model(model_id: str, *, precision: str = "f32", cache_dir: Path,
                       adapter: str | Path | None = None) -> LoadedModel:
    """Load ``model_id`` (hub id or directory) with the gliner2 library; convert or reuse the encoder IR.

    ``adapter`` is a LoRA adapter directory applied over the checkpoint and merged
    into its weights; the IR cache key then combines the checkpoint's and the
    adapter's content digests, so adapted and base encoders never share an IR.
    ``precision="torch"`` keeps the PyTorch encoder: the reference the
    OpenVINO modes are measured and tested against.

    When the IR is already cached (and there is no adapter to merge), the PyTorch
    encoder is never built: the IR compiles on a worker thread while the library
    builds and loads the heads (see :mod:`.lean_load`); the result is the same.
    """
    from . import fast_heads, lean_load, openvino_heads
    from .calibration import calibration_inputs
    from .openvino_encoder import OpenVINOEncoder, export_ir

    if precision not in (*PRECISIONS, "torch"):
        raise ValueError(f"precision must be one of {PRECISIONS + ('torch',)}, got {precision!r}")
    started = time.perf_counter()
    checkpoint = resolve_checkpoint(model_id)
    adapter_dir = Path(adapter).expanduser() if adapter is not None else None
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointUnavailable(f"No LoRA adapter at {adapter}: expected a directory with adapter_config.json")
    ir_path = digest = None
    if precision != "torch":
        digest = content_digest(checkpoint.path, cache_dir)
        if adapter_dir is not None:
            combined = f"{digest}+{content_digest(adapter_dir, cache_dir)}"
            digest = hashlib.sha256(combined.encode()).hexdigest()[:32]
        ir_path = _ir_path(cache_dir, digest, precision)
    model = compilation = None
    if ir_path is not None and adapter_dir is None and ir_path.is_file():
        # Cold start with a cached IR: compile it on a worker thread while the library
        # loads, and never build the PyTorch encoder it would replace (see lean_load).
        compilation = lean_load.EncoderCompilation(ir_path, precision, cache_dir=cache_dir / "compiled")
    imported = time.perf_counter()
    import gliner2  # noqa: F401 - timed apart: the library import dominates a cold start
    import_seconds = time.perf_counter() - imported
    resident_before = resident_bytes()
    if compilation is not None:
        model = lean_load.load_without_encoder(checkpoint.path)
        if model is not None:
            logger.info("encoder IR of %s is cached: loaded the heads only, no PyTorch encoder", model_id)
    if model is None:
        from gliner2 import AutoExtractor

        model = AutoExtractor.from_pretrained(str(checkpoint.path))
    if adapter_dir is not None:
        merge_adapter(model, adapter_dir)
    model.eval()
    if precision != "torch":
        if not ir_path.is_file():
            logger.info("converting the encoder of %s to OpenVINO IR (%s)", model_id, ir_path.parent.name)
            # int8-ptq calibrates activation ranges on the inputs the library feeds this encoder.
            calibration = calibration_inputs(model) if precision == "int8-ptq" else None
            export_ir(model.encoder, ir_path, precision, calibration=calibration)
        encoder_config = getattr(model.encoder, "config", None)
        if compilation is not None:
            model.encoder = compilation.result(config=encoder_config)
        else:
            model.encoder = OpenVINOEncoder(ir_path, precision, cache_dir=cache_dir / "compiled",
                                            config=encoder_config)
        fast_heads.install(model)
        # The heads' IR is fp32 whatever the mode (precision only sets their compile hint).
        openvino_heads.install(model, precision, cache_dir=cache_dir / "compiled",
                               ir_dir=_ir_dir(cache_dir, digest, "heads"))
    return LoadedModel(
        model_id=model_id, model=model, precision=precision,
        architecture=getattr(model, "architecture", "span"),
        load_seconds=time.perf_counter() - started, import_seconds=import_seconds,
        weights_bytes=(weights := _footprint(model, ir_path)),
        memory_bytes=max(weights, _resident_growth(resident_before)),
    )


def load_model(model_id: str, *, precision: str = "f32", cache_dir: Path,
               adapter: str | Path | None = None, runtime: str = "auto") -> LoadedModel:
    """Load ``model_id`` (a bundle directory, hub id or checkpoint directory) for serving.

    With ``runtime="auto"`` a bundle is served by the lean runtime
    (:mod:`gliner_server.lean`: OpenVINO, ``tokenizers`` and numpy; PyTorch,
    transformers and gliner2 are not imported), a checkpoint is first converted
    into a cached bundle (:mod:`.bundles`), and a model the lean runtime cannot
    run (the boundary architecture, unknown head layouts) is served by the
    library path (:func:`load_library_model`), as is ``precision="torch"`` (the
    PyTorch reference) and ``runtime="library"``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if precision == "torch" or runtime == "library":
        return load_library_model(model_id, precision=precision, cache_dir=cache_dir, adapter=adapter)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS + ('torch',)}, got {precision!r}")
    from ..lean.bundle import BundleError
    from ..lean.model import BundleModel
    from .bundles import find_bundle

    started = time.perf_counter()
    bundle, convert_seconds = find_bundle(model_id, precision, cache_dir, adapter)
    if bundle is None:
        return load_library_model(model_id, precision=precision, cache_dir=cache_dir, adapter=adapter)
    resident_before = resident_bytes()
    try:
        model = BundleModel.load(bundle, precision, cache_dir=cache_dir / "compiled")
    except BundleError as error:
        raise CheckpointUnavailable(str(error)) from None
    weights = sum(p.stat().st_size for p in bundle.path.rglob("*.bin")) + (bundle.path / "heads.npz").stat().st_size
    return LoadedModel(
        model_id=model_id, model=model, precision=precision, architecture=model.architecture,
        load_seconds=time.perf_counter() - started, runtime="lean", convert_seconds=convert_seconds,
        weights_bytes=weights, memory_bytes=max(weights, _resident_growth(resident_before)),
    )
