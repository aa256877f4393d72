"""Cross-request batching: grouping, budgets, fairness, isolation, bounds, and results on a real model."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SEED_TEXT, loaded
from helpers import entity_schema, assert_match
from gliner_server.errors import ErrorKind, ServiceError
from gliner_server.runtime.batcher import BatchPolicy, BatchScheduler


class Recorder:
    """A fake model pass: records each pass; the first one blocks until released, so others queue."""

    def __init__(self, fail_on: str | None = None):
        self.passes: list[tuple[list[str], object, int]] = []
        self.gate = threading.Event()
        self.first_started = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts, schemas, options, chunk):
        if not self.first_started.is_set():
            self.first_started.set()
            assert self.gate.wait(10)
        self.passes.append((list(texts), options, chunk))
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("bad text")
        return [f"{t}|{s}" for t, s in zip(texts, schemas)]


def _submit_all(scheduler, recorder, calls):
    """Start a blocking first call, queue ``calls`` behind it, release; return results in call order."""
    with ThreadPoolExecutor(len(calls) + 1) as pool:
        first = pool.submit(scheduler.submit, ["first"], "s0", "o")
        assert recorder.first_started.wait(10)
        futures = [pool.submit(scheduler.submit, *call) for call in calls]
        deadline = time.monotonic() + 10
        while scheduler.queued_texts() < sum(len(c[0]) for c in calls) and time.monotonic() < deadline:
            time.sleep(0.005)
        recorder.gate.set()
        assert first.result(10) == ["first|s0"]
        return [_outcome(f) for f in futures]


def _outcome(future):
    try:
        return future.result(10)
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error


def test_queued_requests_share_one_pass_and_each_gets_its_own_results():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=16))
    calls = [([f"t{i}", f"u{i}"], f"schema{i}", "o") for i in range(5)]
    results = _submit_all(scheduler, recorder, calls)
    assert results == [[f"t{i}|schema{i}", f"u{i}|schema{i}"] for i in range(5)]
    assert len(recorder.passes) == 2            # the blocking first pass, then all five together
    assert sorted(recorder.passes[1][0]) == sorted(t for c in calls for t in c[0])
    assert scheduler.stats.largest == 10


def test_different_output_options_never_share_a_pass():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=16))
    calls = [(["a"], "s", "o"), (["b"], "s", "other"), (["c"], "s", "o")]
    assert _submit_all(scheduler, recorder, calls) == [["a|s"], ["b|s"], ["c|s"]]
    shared = [set(texts) for texts, _, _ in recorder.passes[1:]]
    assert {"a", "c"} in shared and {"b"} in shared
    # every pass ran with the options of each text it carried
    option_of = {text: options for texts, _, options in calls for text in texts}
    for texts, options, _ in recorder.passes[1:]:
        assert {option_of[t] for t in texts} == {options}, (texts, options)


def test_budgets_cap_texts_and_padded_tokens_per_pass():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=4, max_tokens=10_000))
    calls = [([f"x{i}"], "s", "o") for i in range(10)]
    _submit_all(scheduler, recorder, calls)
    assert max(len(texts) for texts, _, _ in recorder.passes) == 4

    recorder = Recorder()
    long_text = "word " * 400           # ~500 estimated tokens
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=64, max_tokens=1200))
    _submit_all(scheduler, recorder, [([long_text], "s", "o") for _ in range(5)])
    assert max(len(texts) for texts, _, _ in recorder.passes) == 2   # 2 × ~500 ≤ 1200 < 3 × ~500


def test_the_oldest_request_goes_first():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=1))
    calls = [([f"x{i}"], "s", "o") for i in range(6)]
    _submit_all(scheduler, recorder, calls)
    order = [texts[0] for texts, _, _ in recorder.passes[1:]]
    assert order == sorted(order, key=lambda t: int(t[1:]))


def test_one_failing_request_does_not_fail_the_others_in_its_pass():
    recorder = Recorder(fail_on="bad")
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=16))
    results = _submit_all(scheduler, recorder, [(["a"], "s", "o"), (["bad"], "s", "o"), (["c"], "s", "o")])
    assert results[0] == ["a|s"] and results[2] == ["c|s"]
    assert isinstance(results[1], RuntimeError) and "bad text" in str(results[1])
    assert scheduler.stats.shared_pass_failures == 1


def test_a_full_queue_refuses_at_once_with_rate_limited():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_queued_texts=3))
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(scheduler.submit, ["first"], "s", "o")
        assert recorder.first_started.wait(10)
        queued = pool.submit(scheduler.submit, ["a", "b", "c"], "s", "o")
        while scheduler.queued_texts() < 3:
            time.sleep(0.005)
        started = time.monotonic()
        with pytest.raises(ServiceError) as refused:
            scheduler.submit(["one more"], "s", "o")
        assert refused.value.kind is ErrorKind.RATE_LIMITED
        assert time.monotonic() - started < 1.0
        assert 1 <= refused.value.retry_after_s <= 60 and scheduler.stats.rejected == 1
        recorder.gate.set()
        assert queued.result(10) == ["a|s", "b|s", "c|s"] and first.result(10)


def test_a_request_that_times_out_is_dropped_from_the_queue():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy())
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(scheduler.submit, ["first"], "s", "o")
        assert recorder.first_started.wait(10)
        with pytest.raises(ServiceError) as late:
            scheduler.submit(["too late"], "s", "o", timeout=0.05)
        assert late.value.kind is ErrorKind.DEADLINE_EXCEEDED
        recorder.gate.set()
        first.result(10)
    assert scheduler.submit(["after"], "s", "o") == ["after|s"]
    assert all("too late" not in texts for texts, _, _ in recorder.passes)


class Caller:
    """A stand-in for grpc.ServicerContext.add_callback: ``leave()`` runs what was registered."""

    def __init__(self, gone: bool = False):
        self.callbacks, self.gone = [], gone

    def add_callback(self, callback) -> bool:
        if self.gone:
            return False
        self.callbacks.append(callback)
        return True

    def leave(self):
        self.gone = True
        for callback in self.callbacks:
            callback()


def test_a_caller_that_leaves_has_its_queued_work_dropped():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy())
    caller = Caller()
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(scheduler.submit, ["first"], "s", "o")
        assert recorder.first_started.wait(10)
        leaving = pool.submit(scheduler.submit, ["abandoned"], "s", "o", cancellation=caller)
        staying = pool.submit(scheduler.submit, ["kept"], "s", "o")
        while scheduler.queued_texts() < 2:
            time.sleep(0.005)
        caller.leave()
        with pytest.raises(ServiceError) as cancelled:
            leaving.result(10)
        assert cancelled.value.kind is ErrorKind.CANCELLED
        assert scheduler.queued_texts() == 1  # gone from the queue at once, not at its turn
        recorder.gate.set()
        assert first.result(10) and staying.result(10) == ["kept|s"]
    assert all("abandoned" not in texts for texts, _, _ in recorder.passes)
    assert scheduler.stats.dropped == 1
    caller.leave()  # callbacks after the answer (gRPC runs them on every termination) change nothing


def test_a_caller_already_gone_is_not_run():
    recorder = Recorder()
    recorder.first_started.set()
    scheduler = BatchScheduler(recorder, BatchPolicy())
    with pytest.raises(ServiceError) as cancelled:
        scheduler.submit(["never"], "s", "o", cancellation=Caller(gone=True))
    assert cancelled.value.kind is ErrorKind.CANCELLED
    assert scheduler.submit(["next"], "s", "o") == ["next|s"]
    assert all("never" not in texts for texts, _, _ in recorder.passes)


def test_a_caller_leaving_during_its_pass_still_gets_the_pass_finished():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy())
    caller = Caller()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(scheduler.submit, ["running"], "s", "o", cancellation=caller)
        assert recorder.first_started.wait(10)
        caller.leave()  # too late to drop: the pass holds it
        recorder.gate.set()
        assert running.result(10) == ["running|s"]
    assert scheduler.stats.dropped == 0


def test_the_worker_exits_when_idle_and_comes_back():
    recorder = Recorder()
    recorder.first_started.set()
    scheduler = BatchScheduler(recorder, BatchPolicy(idle_seconds=0.05))
    assert scheduler.submit(["a"], "s", "o") == ["a|s"]
    worker = scheduler._worker
    worker.join(2)
    assert not worker.is_alive()
    assert scheduler.submit(["b"], "s", "o") == ["b|s"]


SCHEMA_TEXTS = [SEED_TEXT, "Satya Nadella leads Microsoft from Redmond.", "The battery life is poor.",
                "Contoso hired Ann Lee as CFO in Berlin on Monday."]


def test_concurrent_requests_on_a_real_model_equal_one_at_a_time(checkpoints, cache_dir):
    model = loaded(checkpoints["span"], "f32", cache_dir)
    labels = [["company", "person"], ["location", "person", "date"], ["product"], ["company", "role"]]
    flags = dict(threshold=0.4, format_results=True, include_confidence=True, include_spans=True)

    def one(i):
        schema = entity_schema(model, labels[i % 4])
        return model.extract([SCHEMA_TEXTS[i % 4]], schema, **flags)

    alone = [one(i) for i in range(4)]
    passes_before = model.scheduler().stats.passes
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(one, range(24)))
    for i, result in enumerate(together):
        assert_match(result, alone[i % 4])  # padding to a longer text changes only float rounding
    assert model.scheduler().stats.passes - passes_before < 24   # some requests shared a pass


def test_after_a_busy_pass_the_worker_waits_briefly_for_returning_clients():
    recorder = Recorder()
    scheduler = BatchScheduler(recorder, BatchPolicy(max_texts=16, wait_ms=2000))
    _submit_all(scheduler, recorder, [([f"x{i}"], "s", "o") for i in range(4)])   # a pass of 4
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(scheduler.submit, ["early"], "s", "o")]
        time.sleep(0.2)                               # the others come back a little later
        futures += [pool.submit(scheduler.submit, [f"late{i}"], "s", "o") for i in range(3)]
        [f.result(10) for f in futures]
    assert sorted(recorder.passes[-1][0]) == ["early", "late0", "late1", "late2"]


def test_a_lone_client_never_waits():
    recorder = Recorder()
    recorder.first_started.set()
    scheduler = BatchScheduler(recorder, BatchPolicy(wait_ms=5000))
    started = time.monotonic()
    for i in range(3):
        assert scheduler.submit([f"t{i}"], "s", "o") == [f"t{i}|s"]
    assert time.monotonic() - started < 2.5     # one 5 s wait would exceed this
