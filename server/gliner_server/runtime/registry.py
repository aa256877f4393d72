"""Models addressed by id: loaded once, off the request threads; leased while in use; unloaded for real.

* **Loading** runs on the registry's loader thread, one model at a time (a hub
  download or a conversion never runs in a request thread, and two loads never
  double the memory at once). A request for a model that is not loaded starts
  its load and waits for it, at most until its deadline or ``load_wait_s``
  (then 503 ``UNAVAILABLE``, with Retry-After: another replica may have it
  loaded), and at most ``max_load_waiters`` requests wait for one model (the
  others are refused at once), so requests for a cold model never take the
  threads that loaded models are served from.
* **A failed load is remembered** for ``load_backoff_s``: requests meanwhile get
  the same answer at once (``MODEL_UNAVAILABLE``, 503, which Envoy does not
  retry on the other replicas), and the next request after it tries again.
* **Leases**: :meth:`ModelRegistry.lease` holds a model while a request uses
  it. Limits (a count and/or a byte budget, see ``LoadedModel.memory_bytes``)
  are enforced before a load (least recently used models are unloaded to make
  room for it, by its last known size or its checkpoint's) and after it. An
  unloaded model that requests still hold stays the one copy: it is closed
  (its worker stopped, its memory freed) when the last of them is done, and a
  request for it meanwhile takes it back instead of loading a second copy.
"""
from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ErrorKind, ServiceError
from .batcher import NO_EVENTS, BatchEvents, BatchPolicy
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
    owner: str | None = None     # a training job's model: served only to this API client
    training_job_id: str | None = None   # a training job's model: recorded with its inferences


# Called with a model id the configuration does not name: the spec of a model found elsewhere (a complete
# training job), or None. It may block on a database (bounded by its own timeouts).
Resolver = Callable[[str], "ModelSpec | None"]


# Called as loader(source, precision=..., cache_dir=..., adapter=...), like load_model.
Loader = Callable[..., LoadedModel]


class RegistryEvents:
    """What the registry reports (metrics implement it)."""

    def loaded(self, model_id: str, seconds: float, ok: bool) -> None: ...

    def unloaded(self, model_id: str) -> None: ...


NO_REGISTRY_EVENTS = RegistryEvents()


class _Entry:
    """One configured model: its loaded copy (if any), users, and the state of its load."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.model: LoadedModel | None = None
        self.users = 0
        self.listed = False              # in the registry's LRU table (False: unloaded, maybe still in use)
        self.loading = False
        self.waiters = 0
        self.error: ServiceError | None = None
        self.failed_until = 0.0
        self.known_bytes = 0             # the footprint of its last load


class ModelRegistry:
    """Thread-safe loading, leasing and LRU eviction (see the module docstring)."""

    def __init__(self, specs: Sequence[ModelSpec], default_id: str, *, precision: str, cache_dir: Path,
                 max_loaded: int | None = 2, max_loaded_bytes: int | None = None,
                 loader: Loader = load_model, batching: BatchPolicy = BatchPolicy(),
                 load_backoff_s: float = 30.0, load_wait_s: float = 60.0, max_load_waiters: int = 16,
                 events: RegistryEvents = NO_REGISTRY_EVENTS, batch_events: BatchEvents = NO_EVENTS,
                 resolver: Resolver | None = None):
        self._entries = {spec.id: _Entry(spec) for spec in specs}
        if len(self._entries) != len(specs):
            raise ValueError("model ids must be unique")
        if default_id not in self._entries:
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
        self.batching = batching
        self.load_backoff_s = load_backoff_s
        self.load_wait_s = load_wait_s
        self.max_load_waiters = max_load_waiters
        self.events = events
        self.batch_events = batch_events
        self._loader = loader
        self._resolver = resolver
        self._configured = set(self._entries)
        self._lru: OrderedDict[str, _Entry] = OrderedDict()   # listed models, least recently used first
        self._cond = threading.Condition()
        self._loads = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self.load_attempts = 0

    # -- what is configured and loaded ---------------------------------------------------

    def specs(self) -> list[ModelSpec]:
        """The configured models (models found by the resolver are listed by whoever owns them)."""
        with self._cond:
            return [entry.spec for entry in self._entries.values() if entry.spec.id in self._configured]

    def spec(self, model_id: str = "", client_id: str | None = None) -> ModelSpec:
        """The spec of ``model_id`` ("" is the default); NOT_FOUND like :meth:`check`."""
        return self._entry(model_id, client_id).spec

    def loaded_models(self) -> list[LoadedModel]:
        """Models in memory, listed or not (an unloaded one still in use is in memory too)."""
        with self._cond:
            return [e.model for e in self._entries.values() if e.model is not None]

    def loaded_ids(self) -> list[str]:
        """Listed model ids, most recently used last."""
        with self._cond:
            return list(self._lru)

    def resident_bytes(self) -> int:
        with self._cond:
            return self._resident_bytes()

    # -- leases ------------------------------------------------------------------------------

    @contextmanager
    def lease(self, model_id: str = "", deadline: float | None = None) -> Iterator[LoadedModel]:
        """The model for ``model_id`` ("" is the default), kept while the block runs; loads it if needed.

        ``deadline`` (``time.monotonic()``) bounds the wait for a load.
        """
        entry = self._entry(model_id)
        model = self._acquire(entry, deadline)
        try:
            yield model
        finally:
            self._release(entry)

    def check(self, model_id: str = "", client_id: str | None = None) -> None:
        """NOT_FOUND unless ``model_id`` names a configured model (or one the resolver finds, which
        ``client_id`` owns, when given); loads nothing."""
        self._entry(model_id, client_id)

    def get(self, model_id: str = "", deadline: float | None = None) -> LoadedModel:
        """The model, loaded if needed, without holding it (tests, benchmarks, warm-up)."""
        with self.lease(model_id, deadline) as model:
            return model

    def preload(self, model_id: str = "", stop: threading.Event | None = None) -> LoadedModel | None:
        """Load ahead of the first request (the default model at start-up); None if ``stop`` is set first.

        A failure raises the load's ServiceError (whose ``__cause__`` has the details for the operator).
        """
        entry = self._entry(model_id)
        with self._cond:
            self._start_load(entry)
        while True:
            with self._cond:
                if entry.model is not None:
                    return entry.model
                if not entry.loading and entry.error is not None:
                    raise entry.error
                self._cond.wait(0.2)
            if stop is not None and stop.is_set():
                return None

    def _entry(self, model_id: str, client_id: str | None = None) -> _Entry:
        model_id = model_id or self.default_model_id
        with self._cond:
            entry = self._entries.get(model_id)
        if entry is None and self._resolver is not None:
            spec = self._resolver(model_id)
            if spec is not None:
                with self._cond:
                    entry = self._entries.setdefault(spec.id, _Entry(spec))
        if entry is None or (client_id is not None and entry.spec.owner not in (None, client_id)):
            # another client's model is answered exactly like an unknown one
            raise ServiceError(ErrorKind.NOT_FOUND, f"Unknown model_id: {model_id}")
        return entry

    def _acquire(self, entry: _Entry, deadline: float | None) -> LoadedModel:
        closing: list[LoadedModel] = []
        try:
            with self._cond:
                return self._wait_for(entry, deadline, closing)
        finally:
            for victim in closing:
                self._close(victim)

    def _wait_for(self, entry: _Entry, deadline: float | None, closing: list[LoadedModel]) -> LoadedModel:
        """Holds ``_cond``; models to close once it is released go to ``closing``."""
        waiting = False
        try:
            while True:
                if entry.model is not None:
                    if not entry.listed:  # unloaded while still in use: take this copy back
                        self._list(entry)
                        closing += self._evict(keep=entry)
                    self._lru.move_to_end(entry.spec.id)
                    entry.users += 1
                    return entry.model
                now = time.monotonic()
                if not entry.loading and now < entry.failed_until:
                    raise self._failure(entry, now)
                self._start_load(entry)
                if not waiting:
                    if entry.waiters >= self.max_load_waiters:
                        raise ServiceError(ErrorKind.UNAVAILABLE,
                                           f"Model {entry.spec.id} is loading and {entry.waiters} requests "
                                           "already wait for it; retry shortly", retry_after_s=5,
                                           reason="model_loading")
                    entry.waiters += 1
                    waiting = True
                    wait_until = now + self.load_wait_s
                if deadline is not None and now >= deadline:
                    raise ServiceError(ErrorKind.DEADLINE_EXCEEDED,
                                       f"Model {entry.spec.id} was still loading at the request's deadline")
                if now >= wait_until:
                    raise ServiceError(ErrorKind.UNAVAILABLE,
                                       f"Model {entry.spec.id} is still loading; retry shortly",
                                       retry_after_s=5, reason="model_loading")
                self._cond.wait(min(wait_until, deadline or math.inf) - now)
        finally:
            if waiting:
                entry.waiters -= 1

    def _release(self, entry: _Entry) -> None:
        closing = None
        with self._cond:
            entry.users -= 1
            if entry.users == 0 and not entry.listed and entry.model is not None:
                closing, entry.model = entry.model, None
        if closing is not None:
            self._close(closing)

    def _failure(self, entry: _Entry, now: float) -> ServiceError:
        error = entry.error
        wait = max(1, math.ceil(entry.failed_until - now))
        failure = ServiceError(error.kind, f"{error.message}; next attempt in {wait}s", retry_after_s=wait,
                               reason="model_unavailable")
        failure.__cause__ = error.__cause__
        return failure

    # -- loading (on the loader thread) -------------------------------------------------------------

    def _start_load(self, entry: _Entry) -> None:
        """Queue ``entry``'s load unless it is loaded or loading. Holds ``_cond``."""
        if entry.model is None and not entry.loading:
            entry.loading = True
            self._loads.submit(self._load, entry)

    def _load(self, entry: _Entry) -> None:
        spec = entry.spec
        what = spec.id if spec.adapter is None else f"{spec.id} ({spec.adapter} over {spec.source})"
        self._make_room(entry)
        logger.info("loading model %s", what)
        started = time.monotonic()
        with self._cond:
            self.load_attempts += 1
        try:
            model = self._loader(spec.source, precision=self.precision, cache_dir=self.cache_dir,
                                 adapter=spec.adapter)
        except BaseException as error:  # noqa: BLE001 - any load failure becomes one client-facing error
            self._failed(entry, error, what, time.monotonic() - started)
            return
        # The loader names the model after its source; clients know it by its id.
        model = replace(model, model_id=spec.id, batching=self.batching, events=self.batch_events)
        logger.info("loaded model %s in %.1fs (~%.1f MiB)", spec.id, model.load_seconds,
                    model.memory_bytes / 2**20)
        self.events.loaded(spec.id, time.monotonic() - started, True)
        with self._cond:
            entry.model, entry.loading, entry.error, entry.failed_until = model, False, None, 0.0
            entry.known_bytes = model.memory_bytes
            self._list(entry)
            closing = self._evict(keep=entry)
            self._cond.notify_all()
        for victim in closing:
            self._close(victim)

    def _failed(self, entry: _Entry, error: BaseException, what: str, seconds: float) -> None:
        spec = entry.spec
        # Details (paths, hub errors, operator advice) go to the log and to __cause__, not to clients.
        if isinstance(error, CheckpointUnavailable):
            logger.error("model %s is unavailable: %s", what, error)
            failure = ServiceError(ErrorKind.MODEL_UNAVAILABLE, f"Model {spec.id} is unavailable: its checkpoint "
                                   "or adapter could not be found or fetched; the server log has the details")
        else:
            logger.error("loading model %s failed", what, exc_info=error)
            failure = ServiceError(ErrorKind.MODEL_UNAVAILABLE, f"Model {spec.id} could not be loaded "
                                   f"({type(error).__name__}); the server log has the details")
        failure.__cause__ = error
        self.events.loaded(spec.id, seconds, False)
        with self._cond:
            entry.loading, entry.error = False, failure
            entry.failed_until = time.monotonic() + self.load_backoff_s
            self._cond.notify_all()
        logger.info("model %s: the next load is tried on a request after %.0fs", spec.id, self.load_backoff_s)

    def _make_room(self, entry: _Entry) -> None:
        """Before a load: unload least recently used models until it fits (waiting a while for models in use)."""
        incoming = entry.known_bytes or _checkpoint_bytes(entry.spec)
        deadline = time.monotonic() + 30.0
        closing: list[LoadedModel] = []
        with self._cond:
            while True:
                closing += self._evict(keep=None, incoming=(1, incoming))
                if not self._over(incoming=(1, incoming)) or time.monotonic() > deadline:
                    break
                in_use = [e for e in self._entries.values() if e.model is not None and e.users and not e.listed]
                if not in_use:
                    break
                self._cond.wait(0.5)   # an unloaded model still in use is freed when its requests end
        for victim in closing:
            self._close(victim)

    # -- limits ---------------------------------------------------------------------------------

    def _list(self, entry: _Entry) -> None:
        entry.listed = True
        self._lru[entry.spec.id] = entry
        self._lru.move_to_end(entry.spec.id)

    def _resident_bytes(self) -> int:
        return sum(e.model.memory_bytes for e in self._entries.values() if e.model is not None)

    def _over(self, incoming: tuple[int, int] = (0, 0)) -> bool:
        count = self.max_loaded is not None and len(self._lru) + incoming[0] > self.max_loaded
        total = self._resident_bytes() + incoming[1]
        return count or (self.max_loaded_bytes is not None and total > self.max_loaded_bytes)

    def _evict(self, keep: _Entry | None, incoming: tuple[int, int] = (0, 0)) -> list[LoadedModel]:
        """Unlist least recently used models (never ``keep``) until within the limits. Holds ``_cond``.

        Returns the models to close now (those no request holds); the others are
        closed by the last request that releases them.
        """
        closing = []
        while self._over(incoming):
            victim = next((e for e in self._lru.values() if e is not keep), None)
            if victim is None:
                break
            self._lru.pop(victim.spec.id)
            victim.listed = False
            logger.info("unloaded model %s (least recently used)%s", victim.spec.id,
                        f"; {victim.users} request(s) still use it" if victim.users else "")
            if victim.users == 0:
                closing.append(victim.model)
                victim.model = None
        if keep is not None and self._over():
            logger.warning("model %s alone exceeds the memory limit of %s bytes", keep.spec.id, self.max_loaded_bytes)
        return closing

    def _close(self, model: LoadedModel) -> None:
        model.close()
        self.events.unloaded(model.model_id)
        release_freed_memory()

    def close(self) -> None:
        """Stop loading (a load in progress is left to finish on its daemon thread)."""
        self._loads.shutdown(wait=False, cancel_futures=True)


def _checkpoint_bytes(spec: ModelSpec) -> int:
    """A model's size before it was ever loaded: its checkpoint's weight files, if they are on disk."""
    total = 0
    for source in (spec.source, spec.adapter):
        path = Path(source).expanduser() if source else None
        if path is not None and path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*")
                         if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    return total


def release_freed_memory() -> None:
    """Free what an unloaded model left in reference cycles, and hand freed heap pages back to the system
    (glibc keeps them otherwise)."""
    import gc

    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
