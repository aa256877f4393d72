"""``gliner2-convert``: a GLiNER2 checkpoint turned into a self-contained bundle served without PyTorch.

A bundle directory holds everything :mod:`gliner_server.lean` needs:

* ``encoder.xml/.bin``: the encoder as OpenVINO IR, at the bundle's precision
  (the library path's export: windowed DeBERTa attention, NNCF for int8);
* ``heads/*.xml``: every head projection as a row-wise IR (fp32), and
  ``heads.npz``: the small tensors the numpy glue uses (see :mod:`..lean.heads`);
* ``tokenizer.json``: the processor's tokenizer with the special tokens it added;
* ``processor.json``: the processor's settings (special tokens, pooling, word splitter);
* ``config.json``: the checkpoint's gliner2 configuration, for reference;
* ``manifest.json``: what it was made from (source id, content digest of the
  checkpoint and adapter), by what (converter revision, library versions),
  precision, OpenVINO version, and every file's size and SHA-256.

Only this package imports PyTorch, transformers and gliner2 (the ``convert``
extra). Conversion is deterministic in its inputs; the directory is written
under a temporary name and renamed, so a reader never sees half a bundle.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ..lean.bundle import BUNDLE_FORMAT, CONVERTER_REVISION, MANIFEST, BundleError
from ..lean.heads import PARAMETERS_FILE
from ..lean.openvino_compile import PRECISIONS, ir_weights
from ..lifetime import follow_parent

logger = logging.getLogger(__name__)
UNSUPPORTED_EXIT = 3   # exit status for a model the lean runtime cannot run (runtime/bundles.py reads it)


class UnsupportedModel(BundleError):
    """A checkpoint the lean runtime cannot run (it is served through the library instead)."""


def _check_span_heads(model) -> None:
    """Raise :class:`UnsupportedModel` unless the heads are the layout :mod:`..lean.heads` reproduces."""
    from gliner2.layers import CountLSTM, SpanMarkerV0

    from ..runtime.openvino_heads import _is_plain_mlp

    architecture = getattr(model, "architecture", "span")
    if architecture != "span":
        raise UnsupportedModel(f"the {architecture} architecture has no lean runtime yet (span models only)")
    marker = getattr(getattr(model, "span_rep", None), "span_rep_layer", None)
    problems = []
    if type(marker) is not SpanMarkerV0 or not (_is_plain_mlp(marker.project_start)
                                                and _is_plain_mlp(marker.project_end)
                                                and _is_plain_mlp(marker.out_project)):
        problems.append(f"span representation {type(marker).__name__}")
    for name in ("count_pred", "classifier"):
        if not _is_plain_mlp(getattr(model, name, None)):
            problems.append(name)
    count_embed = getattr(model, "count_embed", None)
    if type(count_embed) is not CountLSTM or not _is_plain_mlp(count_embed.projector):
        problems.append(f"counting layer {type(count_embed).__name__}")
    if problems:
        raise UnsupportedModel("the lean runtime does not reproduce this model's " + ", ".join(problems))


def _export_heads(model, out: Path) -> None:
    import numpy as np
    import torch

    from ..runtime.openvino_heads import _Linear, _QuerySide, _TokenSide, convert_rows

    hidden = model.hidden_size
    marker = model.span_rep.span_rep_layer
    gru = model.count_embed.gru
    functions = {
        "span_token_side": (_TokenSide(marker), hidden),
        "span_query_side": (_QuerySide(marker), hidden),
        "count_pred": (model.count_pred, model.count_pred[0].in_features),
        "classifier": (model.classifier, model.classifier[0].in_features),
        "count_embed_projector": (model.count_embed.projector, 2 * hidden),
        "count_embed_hidden_linear": (_Linear(gru.weight_hh_l0, gru.bias_hh_l0), hidden),
    }
    for name, (function, in_dim) in functions.items():
        convert_rows(function, in_dim, out / "heads" / f"{name}.xml")
    first_bias = marker.out_project[0].bias
    with torch.no_grad():
        np.savez(
            out / PARAMETERS_FILE,
            max_width=np.int64(marker.max_width),
            max_count=np.int64(model.count_embed.max_count),
            span_first_bias=(first_bias.float().numpy() if first_bias is not None else np.zeros(0, np.float32)),
            gru_weight_ih=gru.weight_ih_l0.float().numpy(),
            gru_bias_ih=gru.bias_ih_l0.float().numpy(),
            count_pos_embedding=model.count_embed.pos_embedding.weight.float().numpy(),
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_library_model(checkpoint_dir: Path, adapter: Path | None):
    """The gliner2 model of ``checkpoint_dir`` with ``adapter`` merged in, in eval mode."""
    from gliner2 import AutoExtractor

    from ..runtime.loaded_model import merge_adapter

    model = AutoExtractor.from_pretrained(str(checkpoint_dir))
    if adapter is not None:
        merge_adapter(model, adapter)
    return model.eval()


def convert(source: str, out_dir: Path, *, precision: str = "f32", adapter: str | Path | None = None,
            cache_dir: Path | None = None, model=None, replace: bool = True) -> Path:
    """Write the bundle of ``source`` (hub id or checkpoint directory, plus an optional LoRA ``adapter``).

    ``model``, when given, is the already loaded library model of that source
    (saves loading it twice). Raises :class:`UnsupportedModel` for a model the
    lean runtime cannot run, before writing anything. With ``replace=False`` an
    existing bundle at ``out_dir`` (e.g. another replica's) is kept.
    """
    import gliner2
    import openvino as ov
    import torch

    from .. import __version__
    from ..runtime.calibration import calibration_inputs
    from ..runtime.checkpoint import content_digest, resolve_checkpoint
    from ..runtime.openvino_encoder import EXPORT_REVISION, export_ir
    from .processor_settings import export_tokenizer, processor_settings

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    started = time.perf_counter()
    out_dir = Path(out_dir).expanduser().resolve()
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir.parent / ".gliner2-convert-cache"
    checkpoint = resolve_checkpoint(source)
    adapter_dir = Path(adapter).expanduser().resolve() if adapter is not None else None
    if model is None:
        model = load_library_model(checkpoint.path, adapter_dir)
    _check_span_heads(model)
    settings = processor_settings(model)

    partial = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        logger.info("converting %s: encoder to OpenVINO IR (%s)", source, precision)
        calibration = calibration_inputs(model) if precision == "int8-ptq" else None
        export_ir(model.encoder, partial / "encoder.xml", precision, calibration=calibration)
        logger.info("converting %s: heads", source)
        _export_heads(model, partial)
        export_tokenizer(model, partial / "tokenizer.json")
        (partial / "processor.json").write_text(json.dumps(settings, indent=2) + "\n")
        shutil.copyfile(checkpoint.path / "config.json", partial / "config.json")
        files = sorted(p for p in partial.rglob("*") if p.is_file())
        manifest = {
            "format": BUNDLE_FORMAT,
            "architecture": "span",
            "precision": precision,
            "ir_weights": ir_weights(precision),
            "source": {
                "model_id": source,
                "digest": content_digest(checkpoint.path, cache_dir),
                "adapter": str(adapter_dir) if adapter_dir else None,
                "adapter_digest": content_digest(adapter_dir, cache_dir) if adapter_dir else None,
            },
            "converter": {"revision": CONVERTER_REVISION, "export_revision": EXPORT_REVISION,
                          "gliner_server": __version__, "gliner2": gliner2.__version__,
                          "torch": torch.__version__},
            "openvino": ov.get_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": {str(p.relative_to(partial)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                      for p in files},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            if not replace:
                shutil.rmtree(partial)
                return out_dir
            shutil.rmtree(out_dir)
        try:
            partial.replace(out_dir)
        except OSError:
            if replace or not out_dir.exists():
                raise
            shutil.rmtree(partial)      # another process renamed its bundle first
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("converted %s into %s in %.1f s", source, out_dir, time.perf_counter() - started)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``gliner2-convert MODEL_ID_OR_DIR OUT_DIR [--precision P] [--adapter DIR]``."""
    parser = argparse.ArgumentParser(
        prog="gliner2-convert",
        description="Convert a GLiNER2 checkpoint (hub id or directory, optionally with a LoRA adapter) into a "
                    "bundle that gliner2-serve runs without PyTorch.")
    parser.add_argument("source", help="hub id or checkpoint directory (a full fine-tuning job's model is one)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--precision", choices=PRECISIONS, default="f32")
    parser.add_argument("--adapter", type=Path,
                        help="a LoRA adapter directory (e.g. a LoRA training job's) to merge into the weights")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep a bundle already at OUT_DIR (what the server does when it converts on first use)")
    parser.add_argument("--cache-dir", type=Path, help="where content digests are memoised")
    args = parser.parse_args(argv)
    if not follow_parent():   # started by a server that has stopped meanwhile
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..lean.bundle import is_bundle

    if args.if_missing and is_bundle(args.out_dir):
        print(args.out_dir)
        return 0
    try:
        out = convert(args.source, args.out_dir, precision=args.precision, adapter=args.adapter,
                      cache_dir=args.cache_dir, replace=not args.if_missing)
    except UnsupportedModel as error:
        print(f"gliner2-convert: {error}", file=sys.stderr)
        return UNSUPPORTED_EXIT
    except (BundleError, ValueError) as error:
        print(f"gliner2-convert: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the checkpoint's own failure, in one line
        from ..runtime.checkpoint import CheckpointUnavailable

        if isinstance(error, CheckpointUnavailable):
            print(f"gliner2-convert: {error}", file=sys.stderr)
            return 2
        raise
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
