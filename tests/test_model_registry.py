"""The model registry: ids → base, LoRA-adapted and fine-tuned models; lazy loading, LRU limits."""
from __future__ import annotations

import threading
import time
import warnings

import pytest

from conftest import SEED_TEXT, loaded
from helpers import assert_match, served_entities
from model_fixtures import build_fine_tuned_checkpoint, build_lora_adapter

from gliner_server.errors import ErrorKind, ServiceError
from gliner_server.runtime.checkpoint import CheckpointUnavailable
from gliner_server.runtime.loaded_model import LoadedModel, load_model
from gliner_server.runtime.registry import ModelRegistry, ModelSpec

LABELS = ["company", "person", "product", "location"]
TEXTS = [SEED_TEXT, "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris."]


@pytest.fixture(scope="module")
def adapter_dir(span_checkpoint, tmp_path_factory):
    return build_lora_adapter(span_checkpoint, tmp_path_factory.mktemp("lora") / "job_lora", seed=7)


@pytest.fixture(scope="module")
def fine_tuned_dir(tmp_path_factory):
    return build_fine_tuned_checkpoint(tmp_path_factory.mktemp("full") / "job_full", seed=11)


@pytest.fixture(scope="module")
def ir_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("registry-cache")


@pytest.fixture(scope="module")
def registry(span_checkpoint, adapter_dir, fine_tuned_dir, ir_cache):
    specs = [
        ModelSpec("base", str(span_checkpoint), description="the base model"),
        ModelSpec("job_lora", str(span_checkpoint), adapter=str(adapter_dir), kind="fine_tuned"),
        ModelSpec("job_full", str(fine_tuned_dir), kind="fine_tuned"),
    ]
    return ModelRegistry(specs, "base", precision="f32", cache_dir=ir_cache, max_loaded=None)


def entities(model, text, **options):
    """Entities by a served model (a LoadedModel: lean or library runtime) or the library's own model."""
    if hasattr(model, "scheduler"):
        return served_entities(model, text, LABELS, include_confidence=True, **options)
    return model.extract_entities(text, LABELS, include_confidence=True, **options)


def library_adapted_model(base, adapter):
    """The library's own LoRA path (what ``Extractor.load_adapter`` runs): base + adapter,
    unmerged, PyTorch encoder."""
    from gliner2 import AutoExtractor
    from gliner2.training.lora import load_lora_adapter

    model = AutoExtractor.from_pretrained(str(base)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        assert load_lora_adapter(model, adapter)
    return model


# --- real models -------------------------------------------------------------------------------

def test_adapter_model_equals_the_library_with_the_adapter(registry, span_checkpoint, adapter_dir):
    served = registry.get("job_lora")
    assert served.model_id == "job_lora" and served.runtime == "lean"   # a bundle with the adapter merged
    assert served.model.bundle.manifest["source"]["adapter_digest"]
    reference = library_adapted_model(span_checkpoint, adapter_dir)
    for text in TEXTS:
        assert_match(entities(served, text), entities(reference, text))


def test_boundary_adapter_equals_the_library_with_the_adapter(boundary_checkpoint, tmp_path):
    # a gentler delta: the boundary heads are deeper, and larger ones push every score below 0.5
    adapter = build_lora_adapter(boundary_checkpoint, tmp_path / "adapter", seed=5, scale=0.05,
                                 targets=["encoder", "all_task_heads"])
    served = load_model(str(boundary_checkpoint), precision="f32", cache_dir=tmp_path / "cache", adapter=adapter)
    reference = library_adapted_model(boundary_checkpoint, adapter)
    for text in TEXTS:
        got = entities(served, text)
        assert any(got["entities"].values())
        assert_match(got, entities(reference, text))


def test_adapter_changes_outputs_and_gets_its_own_ir(registry, ir_cache):
    adapted, base = registry.get("job_lora"), registry.get("")
    assert base.model_id == "base"
    for text in TEXTS:
        assert entities(adapted, text, threshold=0.0) != entities(base, text, threshold=0.0)
    # every loaded model so far has its own encoder weights, hence its own bundle
    assert len(list((ir_cache / "bundles").glob("*/encoder.xml"))) == len(registry.loaded_ids())


def test_fine_tuned_checkpoint_routes_to_its_own_weights(registry, fine_tuned_dir, span_checkpoint, cache_dir):
    served = registry.get("job_full")
    own = loaded(fine_tuned_dir, "torch", cache_dir).model
    base = loaded(span_checkpoint, "torch", cache_dir).model
    for text in TEXTS:
        assert_match(entities(served, text), entities(own, text))
    assert entities(served, SEED_TEXT, threshold=0.0) != entities(base, SEED_TEXT, threshold=0.0)


def test_memory_estimate_counts_heads_and_ir_weights_at_least(registry, ir_cache):
    model = registry.get("base")
    bundle = model.model.bundle.path
    weights = sum(p.stat().st_size for p in bundle.rglob("*.bin")) + (bundle / "heads.npz").stat().st_size
    assert model.weights_bytes == weights > (bundle / "encoder.bin").stat().st_size
    # what the memory bound counts: the resident memory the load took, never less than the weights
    assert model.memory_bytes >= model.weights_bytes


def test_unknown_id_is_not_found(registry):
    with pytest.raises(ServiceError) as caught:
        registry.get("job_missing")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert caught.value.message == "Unknown model_id: job_missing"


def test_missing_checkpoint_and_adapter_are_unavailable(span_checkpoint, tmp_path):
    specs = [ModelSpec("gone", str(tmp_path / "nothing-here")),
             ModelSpec("bad_adapter", str(span_checkpoint), adapter=str(tmp_path / "no-adapter"))]
    registry = ModelRegistry(specs, "gone", precision="f32", cache_dir=tmp_path)
    for model_id in ("gone", "bad_adapter"):
        with pytest.raises(ServiceError) as caught:
            registry.get(model_id)
        assert caught.value.kind is ErrorKind.MODEL_UNAVAILABLE and model_id in caught.value.message
    assert registry.loaded_ids() == []


# --- loading policy, with a stand-in loader ----------------------------------------------------

class FakeLoader:
    """Records calls; builds model-less LoadedModels of a given size."""

    def __init__(self, sizes=None, delay=0.0):
        self.sizes, self.delay = sizes or {}, delay
        self.calls: list[str] = []
        self.threads: list[str] = []
        self.failures: list[Exception] = []
        self._lock = threading.Lock()

    def __call__(self, source, *, precision, cache_dir, adapter=None):
        with self._lock:
            self.calls.append(source)
            self.threads.append(threading.current_thread().name)
            failure = self.failures.pop(0) if self.failures else None
        time.sleep(self.delay)
        if failure:
            raise failure
        return FakeModel(model_id=source, model=None, precision=precision, architecture="span",
                         load_seconds=self.delay, memory_bytes=self.sizes.get(source, 1))


class FakeModel(LoadedModel):
    closed = False

    def close(self):
        self.closed = True
        super().close()


def fake_registry(loader, ids=("a", "b", "c"), **limits):
    return ModelRegistry([ModelSpec(i, f"src-{i}") for i in ids], ids[0], precision="f32",
                         cache_dir=None, loader=loader, **limits)


def test_nothing_loads_before_first_use():
    loader = FakeLoader()
    registry = fake_registry(loader)
    assert registry.loaded_ids() == [] and loader.calls == []
    assert [s.id for s in registry.specs()] == ["a", "b", "c"]
    assert registry.get().model_id == "a" and registry.loaded_ids() == ["a"]
    assert registry.get("a") is registry.get("") and loader.calls == ["src-a"]


def test_least_recently_used_is_evicted_by_count():
    loader = FakeLoader()
    single = fake_registry(loader, max_loaded=1)
    single.get("a")
    single.get("b")
    assert single.loaded_ids() == ["b"]
    single.get("a")  # the default model is evicted and reloaded like any other
    assert single.loaded_ids() == ["a"] and loader.calls == ["src-a", "src-b", "src-a"]

    pair = fake_registry(FakeLoader(), max_loaded=2)
    held = pair.get("a")
    pair.get("b")
    pair.get("a")
    assert pair.loaded_ids() == ["b", "a"]
    pair.get("c")
    assert pair.loaded_ids() == ["a", "c"]
    pair.get("b")
    assert pair.loaded_ids() == ["c", "b"] and held.model_id == "a"  # evicted, still usable by its holder


def test_least_recently_used_is_evicted_by_bytes():
    sizes = {"src-a": 100, "src-b": 100, "src-c": 150}
    registry = fake_registry(FakeLoader(sizes), max_loaded=None, max_loaded_bytes=250)
    registry.get("a")
    registry.get("b")
    assert registry.loaded_ids() == ["a", "b"]
    registry.get("c")  # 350 bytes: a goes
    assert registry.loaded_ids() == ["b", "c"]
    registry.get("a")  # b + c + a = 350: b goes
    assert registry.loaded_ids() == ["c", "a"]

    tight = fake_registry(FakeLoader(sizes), max_loaded=None, max_loaded_bytes=50)
    tight.get("a")
    tight.get("c")  # too big alone: kept, since it is the one being returned
    assert tight.loaded_ids() == ["c"]


def test_no_limits_means_unbounded():
    registry = fake_registry(FakeLoader({"src-a": 10**12}), max_loaded=None, max_loaded_bytes=None)
    for model_id in ("a", "b", "c"):
        registry.get(model_id)
    assert registry.loaded_ids() == ["a", "b", "c"]


def test_concurrent_first_gets_load_once():
    loader = FakeLoader(delay=0.3)
    registry = fake_registry(loader)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(registry.get("b"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.calls == ["src-b"] and len(results) == 8 and all(r is results[0] for r in results)


def test_loaded_models_keep_serving_while_another_loads():
    entered, release = threading.Event(), threading.Event()
    fast = FakeLoader()

    def loader(source, **kwargs):
        if source == "src-b":
            entered.set()
            release.wait(10)
        return fast(source, **kwargs)

    registry = fake_registry(loader)
    registry.preload("a")
    slow = threading.Thread(target=registry.get, args=("b",))
    slow.start()
    assert entered.wait(10)
    started = time.monotonic()
    assert registry.get("a").model_id == "a" and time.monotonic() - started < 1.0
    release.set()
    slow.join()
    assert registry.loaded_ids() == ["a", "b"]


def test_a_failed_load_is_remembered_for_its_backoff_then_tried_again():
    loader = FakeLoader()
    loader.failures = [CheckpointUnavailable("hub unreachable"), RuntimeError("out of memory")]
    registry = fake_registry(loader, load_backoff_s=0.5)
    with pytest.raises(ServiceError) as first:
        registry.get("b")
    assert first.value.kind is ErrorKind.MODEL_UNAVAILABLE and "Model b is unavailable" in first.value.message
    assert "hub unreachable" in str(first.value.__cause__)  # for the log and the startup path, not clients
    started = time.monotonic()
    for _ in range(20):  # within the backoff: answered from memory, at once, no new attempt
        with pytest.raises(ServiceError) as again:
            registry.get("b")
        assert again.value.kind is ErrorKind.MODEL_UNAVAILABLE and 1 <= again.value.retry_after_s <= 1
        assert "next attempt in" in again.value.message
    assert time.monotonic() - started < 0.4 and loader.calls == ["src-b"]
    time.sleep(0.55)
    with pytest.raises(ServiceError) as second:   # the backoff is over: one new attempt (which fails again)
        registry.get("b")
    assert second.value.kind is ErrorKind.MODEL_UNAVAILABLE and "could not be loaded (RuntimeError)" in \
        second.value.message
    time.sleep(0.55)
    assert registry.get("b").model_id == "b"
    assert loader.calls == ["src-b"] * 3 and registry.loaded_ids() == ["b"]


def test_loads_run_off_the_request_threads_and_waiters_keep_their_deadlines():
    loader = FakeLoader(delay=1.0)
    registry = fake_registry(loader, max_load_waiters=2)
    started = time.monotonic()
    with pytest.raises(ServiceError) as late:
        registry.get("b", deadline=time.monotonic() + 0.2)
    assert late.value.kind is ErrorKind.DEADLINE_EXCEEDED and time.monotonic() - started < 0.5
    assert threading.current_thread().name not in loader.threads  # the load runs on the loader thread
    # Two requests may wait for the load; a third is refused at once (it would only hold a thread).
    waiting = [threading.Thread(target=registry.get, args=("b",)) for _ in range(2)]
    for thread in waiting:
        thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(ServiceError) as refused:
        registry.get("b")
    assert refused.value.kind is ErrorKind.UNAVAILABLE and "already wait" in refused.value.message
    assert time.monotonic() - started < 0.1
    for thread in waiting:
        thread.join(5)
    assert registry.get("b").model_id == "b" and loader.calls == ["src-b"]  # one load for all of them
    assert all(name.startswith("model-loader") for name in loader.threads)


def test_a_waiter_gives_up_after_the_load_wait_with_unavailable():
    loader = FakeLoader(delay=1.0)
    registry = fake_registry(loader, load_wait_s=0.2)
    with pytest.raises(ServiceError) as slow:
        registry.get("c")
    assert slow.value.kind is ErrorKind.UNAVAILABLE and "still loading" in slow.value.message
    assert slow.value.retry_after_s


def test_an_unloaded_model_in_use_is_the_one_copy_and_is_closed_when_released():
    loader = FakeLoader()
    registry = fake_registry(loader, max_loaded=1)
    with registry.lease("a") as a:
        b = registry.get("b")                   # a is unloaded (count limit) while still in use
        assert registry.loaded_ids() == ["b"] and not a.closed
        with registry.lease("a") as again:      # taken back, not loaded again; b (unused) goes, freed at once
            assert again is a and b.closed
        assert loader.calls == ["src-a", "src-b"] and registry.loaded_ids() == ["a"]
        registry.get("c")                       # a unloaded again, still in use
        assert not a.closed
    assert a.closed                             # freed by its last release
    assert registry.loaded_models() == [registry.get("c")]


def test_room_is_made_before_a_load_so_memory_stays_within_the_bound():
    sizes = {"src-a": 100, "src-b": 100, "src-c": 100}
    peak = []

    class Measuring(FakeLoader):
        def __call__(self, source, **kwargs):
            peak.append(registry.resident_bytes())   # what is in memory while this one loads
            return super().__call__(source, **kwargs)

    loader = Measuring(sizes)
    registry = fake_registry(loader, max_loaded=None, max_loaded_bytes=200)
    for model_id in ("a", "b", "c", "a", "b", "c"):
        registry.get(model_id)
        assert registry.resident_bytes() <= 200
    # Once sizes are known (second round), the least recently used goes before the load, not after it.
    assert peak[3:] == [100, 100, 100]


def test_a_model_never_loaded_is_sized_by_its_checkpoint_files(tmp_path):
    from gliner_server.runtime.registry import _checkpoint_bytes

    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_text("{}")
    assert _checkpoint_bytes(ModelSpec("m", str(tmp_path))) == 1000
    assert _checkpoint_bytes(ModelSpec("hub", "fastino/gliner2-base-v1")) == 0   # not on disk yet: unknown
def test_load_model_keeps_its_old_signature(span_checkpoint, cache_dir):
    model = load_model(str(span_checkpoint), precision="torch", cache_dir=cache_dir)
    params = sum(p.numel() * p.element_size() for p in model.model.parameters())
    assert model.model_id == str(span_checkpoint) and model.memory_bytes >= params
