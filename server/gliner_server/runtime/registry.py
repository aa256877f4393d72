"""Models addressed by id, loaded on first use and unloaded least-recently-used first.

Limits (a count and/or a byte budget, see ``LoadedModel.memory_bytes``) are
enforced right after each load, so while a model loads the others keep serving
and the process briefly holds one model more than the limits allow. An evicted
model is only dropped from the registry: requests still holding it finish, and
it is garbage-collected afterwards.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ErrorKind, ServiceError
from .batcher import BatchPolicy
from .checkpoint import CheckpointUnavailable
from .loaded_model import LoadedModel, load_model

logger = logging.getLogger(__name__)

KINDS = ("base", "fine_tuned")


@dataclass(frozen=True)
class ModelSpec:
    id: str                      # what clients pass as model_id
    source: str                  # hub id or checkpoint directory (the base, when adapter is set)
    adapter: str | None = None   # LoRA adapter directory applied over `source`
    description: str = ""
    kind: str = "base"           # "base" | "fine_tuned"


# Called as loader(source, precision=..., cache_dir=..., adapter=...), like load_model.
Loader = Callable[..., LoadedModel]


class ModelRegistry:
    """Thread-safe lazy loading with LRU eviction.

    One short-held lock guards the table of loaded models; each id also has its
    own lock, held for the whole load, so concurrent first requests for an id
    load it once while requests for other models go on.
    """

    def __init__(self, specs: Sequence[ModelSpec], default_id: str, *, precision: str, cache_dir: Path,
                 max_loaded: int | None = 2, max_loaded_bytes: int | None = None,
                 loader: Loader = load_model, batching: BatchPolicy = BatchPolicy()):
        self._specs = {spec.id: spec for spec in specs}
        if len(self._specs) != len(specs):
            raise ValueError("model ids must be unique")
        if default_id not in self._specs:
            raise ValueError(f"default model {default_id!r} is not among the configured models")
        if bad := [spec.id for spec in specs if spec.kind not in KINDS or not spec.id]:
            raise ValueError(f"models need a non-empty id and a kind in {KINDS}: {bad}")
        if max_loaded is not None and max_loaded < 1:
            raise ValueError("max_loaded must be at least 1 (or None for no limit)")
        self.default_model_id = default_id
        self.precision = precision
        self.cache_dir = cache_dir
        self.max_loaded = max_loaded
        self.max_loaded_bytes = max_loaded_bytes
        self._loader = loader
        self.batching = batching
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._load_locks = {model_id: threading.Lock() for model_id in self._specs}

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def loaded_models(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def loaded_ids(self) -> list[str]:
        """Loaded model ids, most recently used last."""
        with self._lock:
            return list(self._loaded)

    def get(self, model_id: str = "") -> LoadedModel:
        """The model for ``model_id`` ("" is the default), loading it if needed."""
        model_id = model_id or self.default_model_id
        spec = self._specs.get(model_id)
        if spec is None:
            raise ServiceError(ErrorKind.NOT_FOUND, f"Unknown model_id: {model_id}")
        model = self._touch(model_id)
        if model is not None:
            return model
        with self._load_locks[model_id]:
            model = self._touch(model_id)  # loaded by the thread we waited for
            if model is not None:
                return model
            model = self._load(spec)
            with self._lock:
                self._loaded[model_id] = model
                self._evict(keep=model_id)
            return model

    def preload(self, model_id: str = "") -> LoadedModel:
        """Load ahead of the first request (e.g. the default model at startup)."""
        return self.get(model_id)

    def _touch(self, model_id: str) -> LoadedModel | None:
        with self._lock:
            model = self._loaded.get(model_id)
            if model is not None:
                self._loaded.move_to_end(model_id)
            return model

    def _load(self, spec: ModelSpec) -> LoadedModel:
        what = spec.id if spec.adapter is None else f"{spec.id} ({spec.adapter} over {spec.source})"
        logger.info("loading model %s", what)
        try:
            model = self._loader(spec.source, precision=self.precision, cache_dir=self.cache_dir,
                                 adapter=spec.adapter)
        # Details (paths, hub errors, operator advice) go to the log and to __cause__, not to clients.
        except CheckpointUnavailable as error:
            logger.error("model %s is unavailable: %s", what, error)
            raise ServiceError(ErrorKind.UNAVAILABLE, f"Model {spec.id} is unavailable: its checkpoint or "
                               "adapter could not be found or fetched; the server log has the details") from error
        except Exception as error:  # noqa: BLE001 - any load failure becomes one client-facing error
            logger.exception("loading model %s failed", what)
            raise ServiceError(ErrorKind.SERVER_ERROR, f"Model {spec.id} could not be loaded "
                               f"({type(error).__name__}); the server log has the details") from error
        # The loader names the model after its source; clients know it by its id.
        model = replace(model, model_id=spec.id, batching=self.batching)
        logger.info("loaded model %s in %.1fs (~%.1f MiB)", spec.id, model.load_seconds,
                    model.memory_bytes / 2**20)
        return model

    def _evict(self, keep: str) -> None:
        """Drop least recently used models (never ``keep``) until within the limits. Holds ``_lock``."""
        def over() -> bool:
            count = self.max_loaded is not None and len(self._loaded) > self.max_loaded
            total = sum(m.memory_bytes for m in self._loaded.values())
            return count or (self.max_loaded_bytes is not None and total > self.max_loaded_bytes)

        while over() and len(self._loaded) > 1:
            victim = next(model_id for model_id in self._loaded if model_id != keep)
            self._loaded.pop(victim)
            logger.info("unloaded model %s (least recently used)", victim)
        if over():
            logger.warning("model %s alone exceeds the memory limit of %d bytes", keep, self.max_loaded_bytes)
