"""The checkpoint's transformer encoder, converted to OpenVINO IR and run by OpenVINO.

Conversion happens once per (checkpoint content, precision, OpenVINO version):
the IR is written under the cache directory and reused on later starts, and
OpenVINO's own compiled-model cache (``CACHE_DIR``) skips recompilation too.

:class:`OpenVINOEncoder` is a drop-in replacement for the Hugging Face encoder
module inside a ``gliner2`` model: the library calls
``encoder(input_ids=..., attention_mask=...).last_hidden_state`` and everything
else (schema handling, heads, decoding) stays the library's own code.

Precision modes (``PRECISIONS``):

* ``f32``: exact (the IR holds fp32 weights, inference precision f32);
* ``bf16``: the same fp32 IR, compiled with inference precision bf16;
* ``int8``: NNCF weight-only INT8_ASYM compression, f32 activations;
* ``int8-ptq``: NNCF post-training quantization (``nncf.quantize``, transformer
  preset with SmoothQuant): int8 weights *and* int8 activations for the
  quantised matrix multiplications, calibrated on encoder inputs the library
  produces (see :mod:`.calibration`); the ops NNCF leaves unquantised
  (attention score matmuls, DeBERTa's relative-position gathers, softmax,
  layer norms) and the OpenVINO heads run in bf16, as in the bf16 mode. With
  those in f32 instead, int8-ptq was no faster than bf16 on requests of
  varying length (measured on an EPYC with avx512_bf16/avx512_vnni:
  ``bench/encoder_precision_speed.py``).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import deberta_attention

logger = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16", "int8", "int8-ptq")
# The IR each mode runs, as named in the IR cache key: f32 and bf16 share the fp32 IR.
IR_WEIGHTS = {"f32": "fp32", "bf16": "fp32", "int8": "int8w", "int8-ptq": "int8q"}
# INFERENCE_PRECISION_HINT per mode (what is not quantised runs at this precision).
_HINTS = {"f32": "f32", "bf16": "bf16", "int8": "f32", "int8-ptq": "bf16"}
OUTPUT_NAME = "last_hidden_state"
# Part of the IR cache key: bumped whenever export_ir builds a different graph from the same
# weights, so IRs cached by an older export are not reused. 2: windowed DeBERTa attention.
EXPORT_REVISION = 2


class _LastHiddenState(torch.nn.Module):
    """Wraps an HF encoder so the traced graph has one named output."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def ir_weights(precision: str) -> str:
    """The weights-format part of the IR cache key for ``precision`` (``fp32``, ``int8w`` or ``int8q``)."""
    if precision not in IR_WEIGHTS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return IR_WEIGHTS[precision]


def quantize_activations(model, calibration):
    """NNCF post-training quantization of an encoder IR (int8 weights and activations).

    ``calibration`` is a sequence of ``(input_ids, attention_mask)`` int64
    arrays as the library feeds the encoder (see :func:`.calibration.calibration_inputs`).
    """
    import nncf

    samples = list(calibration)
    if not samples:
        raise ValueError("int8-ptq needs calibration inputs: see gliner_server.runtime.calibration")
    dataset = nncf.Dataset(samples, lambda s: {"input_ids": np.asarray(s[0], dtype=np.int64),
                                                "attention_mask": np.asarray(s[1], dtype=np.int64)})
    return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))


def export_ir(encoder: torch.nn.Module, ir_path: Path, precision: str, *, calibration=None) -> None:
    """Convert ``encoder`` to OpenVINO IR at ``ir_path`` (dynamic batch and length).

    ``calibration`` (required for ``int8-ptq``, ignored otherwise): encoder
    inputs to calibrate activation ranges on, ``[(input_ids, attention_mask), ...]``.
    """
    import openvino as ov

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8-ptq" and not calibration:
        raise ValueError("int8-ptq needs calibration inputs: export_ir(..., calibration="
                         "gliner_server.runtime.calibration.calibration_inputs(model))")

    example = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad(), deberta_attention.exportable(encoder):
        model = ov.convert_model(
            _LastHiddenState(encoder).eval(),
            example_input={"input_ids": example, "attention_mask": example},
            input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)],
        )
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    if precision == "int8":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif precision == "int8-ptq":
        model = quantize_activations(model, calibration)
    # compress_to_fp16=False: the default would silently store fp16 weights.
    save_ir(model, ir_path)


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


@dataclass
class _Output:
    last_hidden_state: torch.Tensor


class OpenVINOEncoder(torch.nn.Module):
    """An ``nn.Module`` whose forward runs the compiled OpenVINO encoder."""

    def __init__(self, ir_path: Path, precision: str, *, cache_dir: Path | None, config=None):
        super().__init__()
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
        self.compiled = compile_cached(core, str(ir_path), properties)
        self.precision = precision
        self.config = config  # the HF encoder config, for code that inspects it
        self._local = threading.local()
        self.last_token_counts: list[int] | None = None

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        request = self._request()
        request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        # Copy: the request's output buffer is reused by its next inference.
        return request.get_tensor(OUTPUT_NAME).data.copy()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_ignored):
        # Tokens per row (schema prompt and text): what the request log and metrics count.
        # Only the model's worker thread calls forward.
        self.last_token_counts = attention_mask.sum(dim=1).tolist()
        states = self.run(
            input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        )
        return _Output(last_hidden_state=torch.from_numpy(states))
