"""The checkpoint's transformer encoder, converted to OpenVINO IR and run by OpenVINO.

Conversion happens once per (checkpoint content, precision, OpenVINO version):
the IR is written under the cache directory and reused on later starts, and
OpenVINO's own compiled-model cache (``CACHE_DIR``) skips recompilation too.

:class:`OpenVINOEncoder` is a drop-in replacement for the Hugging Face encoder
module inside a ``gliner2`` model: the library calls
``encoder(input_ids=..., attention_mask=...).last_hidden_state`` and everything
else (schema handling, heads, decoding) stays the library's own code.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16", "int8")
OUTPUT_NAME = "last_hidden_state"


class _LastHiddenState(torch.nn.Module):
    """Wraps an HF encoder so the traced graph has one named output."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_ir(encoder: torch.nn.Module, ir_path: Path, precision: str) -> None:
    """Convert ``encoder`` to OpenVINO IR at ``ir_path`` (dynamic batch and length)."""
    import openvino as ov

    example = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        model = ov.convert_model(
            _LastHiddenState(encoder).eval(),
            example_input={"input_ids": example, "attention_mask": example},
            input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)],
        )
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    if precision == "int8":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ir_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ir_path.with_name(ir_path.stem + ".partial.xml")
    # compress_to_fp16=False: the default would silently store fp16 weights.
    ov.save_model(model, tmp, compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(ir_path.with_suffix(".bin"))
    tmp.replace(ir_path)


def compile_config(precision: str) -> dict:
    """OpenVINO CPU properties for a precision mode.

    This CPU's default inference precision is bf16, so f32 (exact) must be
    asked for explicitly; int8 is weight-only, with f32 activations.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    hint = "bf16" if precision == "bf16" else "f32"
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}


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

        core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        properties = compile_config(precision)
        if precision == "bf16" and not cpu_supports_bf16(core):
            logger.warning("this CPU has no bf16 support; running the bf16 mode in f32")
            properties["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(str(ir_path), "CPU", properties)
        self.precision = precision
        self.config = config  # the HF encoder config, for code that inspects it
        self._local = threading.local()

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
        states = self.run(
            input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        )
        return _Output(last_hidden_state=torch.from_numpy(states))
