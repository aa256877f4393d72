"""The served span model's heads (batched count embedding, OpenVINO projections) equal the library's.

test_parity.py compares whole requests; these tests pin the pieces: the batched
count embedding against ``CountLSTM.forward`` task by task, and the installed
heads against the untouched library model on the very same encoder output (the
library's ``hidden_states`` seam), so only the heads differ.
"""
from __future__ import annotations

import pytest
import torch

from conftest import SEED_TEXT, loaded
from helpers import assert_match

from gliner_server.runtime import fast_heads, openvino_heads


def test_batched_count_embedding_equals_the_library_per_task():
    from gliner2.layers import CountLSTM

    torch.manual_seed(0)
    layer = CountLSTM(32, max_count=6).eval()
    # Mixed field counts and steps, one task beyond max_count (capped, as the library caps it).
    tasks = [(torch.randn(m, 32), n) for m, n in [(4, 1), (3, 5), (1, 9), (6, 2), (2, 5), (5, 1)]]
    with torch.no_grad():
        batched = fast_heads.count_embed_many(layer, tasks)
        for (fields, steps), got in zip(tasks, batched):
            expected = layer(fields, steps)
            assert got.shape == expected.shape
            assert torch.allclose(got, expected, atol=1e-5), (fields.shape, steps)


def test_batched_count_embedding_detects_a_wrong_step_order():
    """The comparison above can fail: a GRU run with permuted rows would not match."""
    from gliner2.layers import CountLSTM

    torch.manual_seed(1)
    layer = CountLSTM(16).eval()
    fields = torch.randn(3, 16)
    with torch.no_grad():
        (got,) = fast_heads.count_embed_many(layer, [(fields, 3)])
        assert not torch.allclose(got, layer(fields.flip(0), 3), atol=1e-5)


@pytest.fixture(scope="module")
def span_pair(checkpoints, cache_dir):
    served = loaded(checkpoints["span"], "f32", cache_dir, runtime="library").model
    reference = loaded(checkpoints["span"], "torch", cache_dir).model
    return served, reference


def test_span_models_get_the_fast_heads(span_pair):
    served, reference = span_pair
    assert isinstance(served.count_pred, openvino_heads.RowwiseOpenVINO)
    assert isinstance(served.classifier, openvino_heads.RowwiseOpenVINO)
    assert isinstance(served.count_embed.projector, openvino_heads.RowwiseOpenVINO)
    assert served.span_rep.span_rep_layer.score_queries.__func__ is openvino_heads._score_queries
    assert served._compute_direct_span_logits_batched.__func__ is fast_heads._direct_span_logits_batched
    # The reference keeps the library's own heads.
    assert not isinstance(reference.count_pred, openvino_heads.RowwiseOpenVINO)
    assert "_compute_direct_span_logits_batched" not in vars(reference)


def test_boundary_models_keep_the_library_heads(checkpoints, cache_dir):
    served = loaded(checkpoints["boundary"], "f32", cache_dir, runtime="library").model
    assert openvino_heads.install(served, "f32") == []
    assert not fast_heads.install(served)


TEXTS = [SEED_TEXT, "The battery life is poor but the screen is great.",
         "Contoso hired Ann Lee as CFO in Berlin; she reports to Bob Stone."]


def _combined_schema(model):
    schema = model.create_schema().entities({"person": "A human", "company": "", "location": ""})
    schema = schema.classification("sentiment", ["positive", "negative", "neutral"])
    schema = schema.classification("topics", ["tech", "business", "sports"], multi_label=True)
    schema.structure("hire").field("person", dtype="str").field("role", dtype="list")
    return schema.relations(["works_for", "located_in"])


def test_heads_on_the_same_encoder_output_match_the_library(span_pair):
    served, reference = span_pair
    captured = []
    run = served.encoder.run
    served.encoder.run = lambda ids, mask: captured.append((run(ids, mask), mask)) or captured[-1][0]
    try:
        served.batch_extract(TEXTS, _combined_schema(served), batch_size=len(TEXTS))
    finally:
        served.encoder.run = run
    (states, mask), = captured
    hidden = [torch.from_numpy(states[i, : int(mask[i].sum())]) for i in range(len(TEXTS))]
    flags = dict(include_confidence=True, include_spans=True, threshold=0.3)
    got = served.batch_extract(TEXTS, _combined_schema(served), hidden_states=hidden, **flags)
    expected = reference.batch_extract(TEXTS, _combined_schema(reference), hidden_states=hidden, **flags)
    assert_match(got, expected)
    assert any(r["entities"] for r in expected)  # the comparison covers real spans


def test_head_ir_is_converted_once_then_read_back(checkpoints, tmp_path, monkeypatch):
    """A restart reads the heads' cached IR instead of tracing them again, and runs the same heads."""
    import openvino as ov
    from gliner2 import AutoExtractor

    first = AutoExtractor.from_pretrained(str(checkpoints["span"])).eval()
    moved = openvino_heads.install(first, "f32", ir_dir=tmp_path / "heads")
    assert len(list((tmp_path / "heads").glob("*.xml"))) == 6 and len(moved) == 4

    def refuse(*_args, **_kwargs):
        raise AssertionError("the heads' IR is cached: nothing is converted again")

    monkeypatch.setattr(ov, "convert_model", refuse)
    second = AutoExtractor.from_pretrained(str(checkpoints["span"])).eval()
    assert openvino_heads.install(second, "f32", ir_dir=tmp_path / "heads") == moved
    rows = torch.randn(5, first.hidden_size)
    assert torch.equal(second.classifier(rows), first.classifier(rows))
    assert torch.equal(second.count_pred(rows), first.count_pred(rows))
