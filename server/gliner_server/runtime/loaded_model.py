"""A GLiNER2 checkpoint loaded for serving: library model + OpenVINO encoder."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import resolve_checkpoint, content_digest
from .openvino_encoder import PRECISIONS, OpenVINOEncoder, export_ir

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """One servable model. ``extract`` is safe to call from many threads."""

    model_id: str
    model: Any                      # a gliner2 SpanExtractor / BoundaryExtractor
    precision: str                  # f32 | bf16 | int8 | torch (reference, no OpenVINO)
    architecture: str
    load_seconds: float
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def extract(self, texts: list[str], schema, *, threshold: float, batch_size: int,
                format_results: bool, include_confidence: bool, include_spans: bool) -> list[dict]:
        with self._lock:
            return self.model.batch_extract(
                texts, schema, batch_size=batch_size, threshold=threshold,
                format_results=format_results, include_confidence=include_confidence,
                include_spans=include_spans,
            )


def _ir_path(cache_dir: Path, digest: str, precision: str) -> Path:
    import openvino as ov

    weights = "int8w" if precision == "int8" else "fp32"  # f32 and bf16 share the fp32 IR
    version = ov.get_version().split("-")[0]
    return cache_dir / "ir" / f"{digest}-{weights}-ov{version}" / "encoder.xml"


def load_model(model_id: str, *, precision: str = "f32", cache_dir: Path) -> LoadedModel:
    """Load ``model_id`` (hub id or directory); convert or reuse the encoder IR.

    ``precision="torch"`` keeps the PyTorch encoder: the reference the
    OpenVINO modes are measured and tested against.
    """
    if precision not in (*PRECISIONS, "torch"):
        raise ValueError(f"precision must be one of {PRECISIONS + ('torch',)}, got {precision!r}")
    started = time.perf_counter()
    checkpoint = resolve_checkpoint(model_id)
    from gliner2 import AutoExtractor

    model = AutoExtractor.from_pretrained(str(checkpoint.path))
    model.eval()
    if precision != "torch":
        ir_path = _ir_path(cache_dir, content_digest(checkpoint.path, cache_dir), precision)
        if not ir_path.is_file():
            logger.info("converting the encoder of %s to OpenVINO IR (%s)", model_id, ir_path.parent.name)
            export_ir(model.encoder, ir_path, precision)
        encoder_config = getattr(model.encoder, "config", None)
        model.encoder = OpenVINOEncoder(ir_path, precision, cache_dir=cache_dir / "compiled",
                                        config=encoder_config)
    return LoadedModel(
        model_id=model_id, model=model, precision=precision,
        architecture=getattr(model, "architecture", "span"),
        load_seconds=time.perf_counter() - started,
    )
