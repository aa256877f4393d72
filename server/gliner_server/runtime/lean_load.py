"""Loading a checkpoint whose encoder IR is cached: no PyTorch encoder, IR compiled meanwhile.

:func:`.loaded_model.load_model` replaces the library's PyTorch encoder with the
OpenVINO one. When the encoder's IR is already cached, building that PyTorch
encoder is pure waste: for deberta-v3-base shapes ``AutoExtractor.from_pretrained``
constructs and randomly initialises 184 M parameters (about 0.9 s of CPU) and
reads their 540 MB from ``model.safetensors``, only to drop them. So:

* :func:`load_without_encoder` is gliner2 2.1.0's ``from_pretrained`` (span and
  boundary: same steps, same order, same library helpers) except that the encoder
  module is constructed on the ``meta`` device (same class and config, including
  the attention implementation and any vocabulary resize, but no storage and no
  initialisation) and only the non-encoder tensors are read from the checkpoint.
  Everything the heads are made of (construction, tokenizer, processor, weights)
  is the library's own code path, so the heads are bit-identical to a full
  load's; the checkpoint's encoder tensors are still checked, by name and shape,
  against the encoder the library would have built.
* :class:`EncoderCompilation` compiles the IR on a worker thread (OpenVINO
  releases the GIL) while the caller imports gliner2 and builds the heads.

Anything unexpected (another gliner2 version, a class with its own loader, no
``model.safetensors``, a key mismatch) returns ``None`` and the caller falls back
to the library's full load, whose errors are the library's own.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path

logger = logging.getLogger(__name__)

SUPPORTED_LIBRARY_VERSION = "2.1.0"  # the version whose from_pretrained this mirrors
ENCODER_PREFIX = "encoder."
WEIGHTS_FILE = "model.safetensors"


class EncoderCompilation:
    """``OpenVINOEncoder(ir_path, precision, cache_dir=...)``, compiled on a worker thread started at once."""

    def __init__(self, ir_path: Path, precision: str, *, cache_dir: Path | None):
        self._future: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ir_path, precision, cache_dir),
                                        name="openvino-encoder-compile", daemon=True)
        self._thread.start()

    def _run(self, ir_path: Path, precision: str, cache_dir: Path | None) -> None:
        try:
            from .openvino_encoder import OpenVINOEncoder

            self._future.set_result(OpenVINOEncoder(ir_path, precision, cache_dir=cache_dir))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._future.set_exception(error)

    def result(self, *, config=None):
        """The compiled encoder (waits for it), carrying ``config`` (the HF encoder config)."""
        encoder = self._future.result()
        encoder.config = config
        return encoder


def load_without_encoder(path: Path):
    """The gliner2 model in checkpoint directory ``path``, its encoder left on ``meta``; None if unsupported.

    The caller must replace ``model.encoder`` before running the model.
    """
    import gliner2

    if getattr(gliner2, "__version__", "") != SUPPORTED_LIBRARY_VERSION:
        logger.info("gliner2 %s is not %s: loading the PyTorch encoder too",
                    getattr(gliner2, "__version__", "?"), SUPPORTED_LIBRARY_VERSION)
        return None
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        return None

    import torch
    from gliner2 import AutoExtractor
    from gliner2.configuration import ExtractorConfig, architecture_from_config
    from gliner2.models.base import load_extractor_tokenizer
    from gliner2.models.boundary.model import BoundaryExtractorModel
    from gliner2.models.loading import apply_post_load_options, reconcile_encoder_embeddings
    from gliner2.models.span.model import SpanExtractorModel
    from safetensors import safe_open
    from transformers import AutoConfig

    # The steps of SpanExtractorModel/BoundaryExtractorModel.from_pretrained (gliner2 2.1.0),
    # for a local directory and no load options.
    config = ExtractorConfig.from_pretrained(str(path / "config.json"))
    cls = AutoExtractor._resolve_class(architecture_from_config(config))
    loader = getattr(cls.from_pretrained, "__func__", None)
    if loader not in (SpanExtractorModel.from_pretrained.__func__, BoundaryExtractorModel.from_pretrained.__func__):
        return None  # a class with its own loader: nothing here mirrors it
    encoder_config = AutoConfig.from_pretrained(str(path / "encoder_config" / "config.json"))
    tokenizer = load_extractor_tokenizer(str(path))
    model = _construct_with_meta_encoder(cls, config, encoder_config=encoder_config, tokenizer=tokenizer,
                                         use_flashdeberta=None, word_splitter=None)

    with safe_open(str(weights), framework="pt") as checkpoint:
        names = list(checkpoint.keys())
        state = {name: checkpoint.get_tensor(name) for name in names if not name.startswith(ENCODER_PREFIX)}
        encoder_shapes = {name: tuple(checkpoint.get_slice(name).get_shape())
                          for name in names if name.startswith(ENCODER_PREFIX)}
    # Resizes the (meta) encoder's vocabulary as the library would; only shapes are read.
    state.update({name: torch.empty(shape, device="meta") for name, shape in encoder_shapes.items()
                  if name.endswith("word_embeddings.weight")})
    reconcile_encoder_embeddings(model, state)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items() if name.startswith(ENCODER_PREFIX)}
    if expected != encoder_shapes:
        logger.info("the checkpoint's encoder tensors differ from the encoder gliner2 builds: full load")
        return None
    state = {name: tensor for name, tensor in state.items() if not name.startswith(ENCODER_PREFIX)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not name.startswith(ENCODER_PREFIX) for name in missing):
        return None  # the library's strict load would fail: let it, with its own message

    model.config._name_or_path = str(path)
    model.name_or_path = str(path)
    return apply_post_load_options(model)  # the library's defaults: no device, dtype or compile change


def _construct_with_meta_encoder(cls, *args, **kwargs):
    """``cls(*args, **kwargs)`` with the module its ``_load_encoder`` returns built on the meta device.

    Built as a same-named throwaway subclass that only overrides ``_load_encoder``
    (so nothing global is patched and concurrent loads are unaffected), then
    turned back into a plain ``cls`` instance.
    """
    import torch

    library_load_encoder = cls._load_encoder

    def load_encoder_on_meta(*load_args, **load_kwargs):
        with torch.device("meta"):
            return library_load_encoder(*load_args, **load_kwargs)

    shell = type(cls.__name__, (cls,), {"_load_encoder": staticmethod(load_encoder_on_meta),
                                        "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    model = shell(*args, **kwargs)
    model.__class__ = cls
    return model
