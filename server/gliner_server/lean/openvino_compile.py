"""OpenVINO compilation and the encoder call, with no PyTorch: what a serving process runs.

The IR files come from :mod:`gliner_server.conversion` (or the library path's
conversion in :mod:`gliner_server.runtime.loaded_model`); this module only reads
and compiles them. Precision modes (``PRECISIONS``) are described in
:mod:`gliner_server.runtime.openvino_encoder`, which exports them.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16", "int8", "int8-ptq")
# The IR each mode runs, as named in the IR cache key: f32 and bf16 share the fp32 IR.
IR_WEIGHTS = {"f32": "fp32", "bf16": "fp32", "int8": "int8w", "int8-ptq": "int8q"}
# INFERENCE_PRECISION_HINT per mode (what is not quantised runs at this precision).
_HINTS = {"f32": "f32", "bf16": "bf16", "int8": "f32", "int8-ptq": "bf16"}
OUTPUT_NAME = "last_hidden_state"

def ir_weights(precision: str) -> str:
    """The weights-format part of the IR cache key for ``precision`` (``fp32``, ``int8w`` or ``int8q``)."""
    if precision not in IR_WEIGHTS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return IR_WEIGHTS[precision]


def save_ir(model, ir_path: Path) -> None:
    """Write an IR (fp32 weights kept) so that readers, also in other processes, never see half of one.

    Each writer saves under its own name, then renames: replicas starting
    together on one cache each end with a whole IR, the last rename winning.
    """
    import os

    import openvino as ov

    ir_path.parent.mkdir(parents=True, exist_ok=True)
    partial = ir_path.with_name(f"{ir_path.stem}.partial-{os.getpid()}.xml")
    ov.save_model(model, partial, compress_to_fp16=False)
    partial.with_suffix(".bin").replace(ir_path.with_suffix(".bin"))
    partial.replace(ir_path)


def compile_cached(core, model, properties: dict):
    """``core.compile_model`` on the CPU, surviving another process writing the same compiled-model cache entry.

    OpenVINO's cache is not safe across processes: when two replicas compile
    one model at once, one may fail on the other's half-written blob. Such a
    failure is retried once (the entry is then usually whole), then compiled
    without the cache.
    """
    import openvino as ov

    try:
        return core.compile_model(model, "CPU", properties)
    except RuntimeError as error:
        if "blob" not in str(error) and "cache" not in str(error).lower():
            raise
        logger.warning("compiled-model cache entry busy (%s); compiling again", str(error).splitlines()[-1])
    try:
        return core.compile_model(model, "CPU", properties)
    except RuntimeError:
        return ov.Core().compile_model(model, "CPU", properties)


# OpenVINO's CPU plugin keeps the kernels and scratch buffers it builds for each input shape in a
# "runtime cache", 5000 entries per kind of layer by default. Texts come in every length, so with
# dynamic shapes that cache fills with thousands of shapes: about 2 GB more resident memory after a
# few thousand ordinary requests on the tiny test model (bench/memory_growth.py). A few hundred
# entries keep the shapes traffic actually repeats at no measurable cost in speed; 0 disables it
# (about a quarter slower). Set before models load (gliner2-serve --runtime-cache-entries).
RUNTIME_CACHE_ENTRIES = 256


def set_runtime_cache_entries(entries: int) -> None:
    global RUNTIME_CACHE_ENTRIES
    if entries < 0:
        raise ValueError("runtime cache entries must not be negative")
    RUNTIME_CACHE_ENTRIES = entries


def compile_config(precision: str) -> dict:
    """OpenVINO CPU properties for a precision mode.

    This CPU's default inference precision is bf16, so f32 (exact) must be
    asked for explicitly; int8 is weight-only, with f32 activations; int8-ptq
    runs its quantised layers in int8 and everything else in bf16. A bf16 hint
    falls back to f32 on CPUs without bf16 (see ``OpenVINOEncoder``). The
    runtime cache is bounded (see ``RUNTIME_CACHE_ENTRIES``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
            "CPU_RUNTIME_CACHE_CAPACITY": str(RUNTIME_CACHE_ENTRIES)}


def is_activation_quantized(ir_path: Path) -> bool:
    """Whether the IR at ``ir_path`` has quantised activations (NNCF inserts FakeQuantize ops)."""
    return 'type="FakeQuantize"' in Path(ir_path).read_text(errors="replace")


def cpu_supports_bf16(core) -> bool:
    """OpenVINO lists capabilities in upper case ("BF16")."""
    return "BF16" in {c.upper() for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")}


class ThreadRequests:
    """Infer requests of one compiled model, one per calling thread (a request is not thread-safe; the compiled
    model is): what the encoder and every head function call through."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._local = threading.local()

    def get(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request


class Encoder:
    """A compiled encoder IR: ``run(input_ids, attention_mask)`` gives the last hidden state as numpy.

    One infer request per calling thread (requests are not thread-safe; the
    compiled model is).
    """

    def __init__(self, ir_path: Path, precision: str, *, cache_dir: Path | None):
        import openvino as ov

        if precision == "int8-ptq" and not is_activation_quantized(ir_path):
            # An IR cache key that does not tell int8-ptq apart would hand it the fp32 IR.
            raise RuntimeError(f"{ir_path} is not an int8-ptq (activation-quantised) IR; "
                               f"its cache key must use ir_weights('int8-ptq') = {IR_WEIGHTS['int8-ptq']!r}")
        core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        properties = compile_config(precision)
        if properties["INFERENCE_PRECISION_HINT"] == "bf16" and not cpu_supports_bf16(core):
            logger.warning("this CPU has no bf16 support; running the %s mode's bf16 parts in f32", precision)
            properties["INFERENCE_PRECISION_HINT"] = "f32"
        self.core = core
        self.compiled = compile_cached(core, str(ir_path), properties)
        self.precision = precision
        self._requests = ThreadRequests(self.compiled)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        request = self._requests.get()
        request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        # Copy: the request's output buffer is reused by its next inference.
        return request.get_tensor(OUTPUT_NAME).data.copy()
