"""The windowed DeBERTa-v2 relative-position attention used for export gives transformers' own scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gliner_server.runtime import deberta_attention
from gliner_server.runtime.openvino_encoder import OpenVINOEncoder, export_ir


def tiny_deberta(**overrides):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    # 16 buckets, 64 max positions: lengths past 8 use log buckets, past 16 the whole table.
    options = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                   vocab_size=100, relative_attention=True, position_buckets=16, max_relative_positions=64,
                   pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True)
    options.update(overrides)
    return DebertaV2Model(DebertaV2Config(**options)).eval()


def batch(length: int, texts: int = 3):
    generator = torch.Generator().manual_seed(length)
    ids = torch.randint(5, 90, (texts, length), generator=generator)
    mask = torch.ones(texts, length, dtype=torch.long)
    if texts > 1:
        mask[-1, max(1, length // 2):] = 0  # a padded text, as batches have
    return ids, mask


@pytest.mark.parametrize("overrides", [{}, {"share_att_key": False}, {"pos_att_type": ["c2p"]},
                                       {"pos_att_type": ["p2c"]}])
@pytest.mark.parametrize("length", [1, 2, 7, 8, 9, 16, 17, 40, 100])
def test_windowed_scores_equal_transformers(overrides, length):
    encoder = tiny_deberta(**overrides)
    ids, mask = batch(length)
    with torch.no_grad():
        want = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        with deberta_attention.exportable(encoder) as patched:
            got = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        again = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert patched == 2
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert torch.equal(again, want)  # restored: the PyTorch encoder is the library's again


def test_other_encoders_are_left_alone():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                vocab_size=50))
    with deberta_attention.exportable(bert) as patched:
        assert patched == 0


def test_exported_ir_has_dynamic_windows_and_matches_transformers(tmp_path):
    """One IR (dynamic batch and length) is exact at every length, in and past the window regimes."""
    encoder = tiny_deberta()
    ir = tmp_path / "encoder.xml"
    export_ir(encoder, ir, "f32")
    kinds = {op.get_type_name() for op in __import__("openvino").Core().read_model(ir).get_ops()}
    assert "Tile" not in kinds and "GatherElements" not in kinds  # no per-text copies, no expanded index
    compiled = OpenVINOEncoder(ir, "f32", cache_dir=None)
    for length in (1, 5, 9, 17, 40, 100):
        ids, mask = batch(length)
        with torch.no_grad():
            want = encoder(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        got = compiled.run(ids.numpy(), mask.numpy())
        valid = mask.numpy().astype(bool)
        np.testing.assert_allclose(got[valid], want[valid], rtol=0, atol=1e-4)
