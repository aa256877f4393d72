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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..lean.openvino_compile import (  # noqa: F401 - re-exported: the library path's names
    IR_WEIGHTS,
    OUTPUT_NAME,
    PRECISIONS,
    Encoder,
    compile_cached,
    compile_config,
    cpu_supports_bf16,
    ir_weights,
    is_activation_quantized,
    save_ir,
    set_runtime_cache_entries,
)
from . import deberta_attention

logger = logging.getLogger(__name__)

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


@dataclass
class _Output:
    last_hidden_state: torch.Tensor


class OpenVINOEncoder(torch.nn.Module):
    """An ``nn.Module`` whose forward runs the compiled OpenVINO encoder (:class:`~..lean.openvino_compile.Encoder`)."""

    def __init__(self, ir_path: Path, precision: str, *, cache_dir: Path | None, config=None):
        super().__init__()
        self._encoder = Encoder(ir_path, precision, cache_dir=cache_dir)
        self.compiled = self._encoder.compiled
        self.precision = precision
        self.config = config  # the HF encoder config, for code that inspects it
        self.last_token_counts: list[int] | None = None

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._encoder.run(input_ids, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_ignored):
        # Tokens per row (schema prompt and text): what the request log and metrics count.
        # Only the model's worker thread calls forward.
        self.last_token_counts = attention_mask.sum(dim=1).tolist()
        states = self.run(
            input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        )
        return _Output(last_hidden_state=torch.from_numpy(states))
