"""DeBERTa-v2's relative-position attention, rewritten for export: the same scores, far less work.

GLiNER2's encoders are DeBERTa-v3 (``DebertaV2Model``). Every layer adds to
its attention scores a content→position and a position→content term
(``DisentangledSelfAttention.disentangled_attention_bias``). As transformers
writes it, each layer

* projects the whole relative-position table (``2 × position_buckets`` rows,
  512 for deberta-v3-base) and copies it once per text in the batch
  (``repeat``: a ``Tile`` of 393 k floats per layer and text in OpenVINO);
* scores every query token against all 512 relative positions, although a
  text of ``L`` tokens only ever uses the ``2L - 1`` positions around the centre
  (28 tokens: 55 of 512 columns);
* expands a ``[batch × heads, L, L]`` index and gathers with it
  (``GatherElements``, a reference kernel in OpenVINO's CPU plugin).

Profiled in OpenVINO on deberta-v3-base's shapes (2 cores, f32), those three
cost 15 of 79 ms at one text of 28 tokens, 280 of 1170 ms at 16 texts of 28
tokens, and ~300 of 1450 ms at 512 tokens.

:func:`windowed_attention_bias` computes the same tensor: it projects the
whole table (a constant, folded by OpenVINO at compile time, as before), keeps
only the rows a text of this length can use, scores against those with a
broadcasting matmul (no copy per text), and picks the scores with one flat
index shared by all texts and heads. Each score is the same dot product of the
same two vectors as in transformers, and every index is the one transformers
would gather, shifted by the window's start; only float summation order inside
the matrix kernels may differ. :func:`exportable` applies it to an encoder's
attention modules while it is traced for conversion and restores them after, so
the PyTorch reference is never changed. The parity tests compare the served
model with the untouched library.
"""
from __future__ import annotations

import contextlib
import logging
import types

import torch

logger = logging.getLogger(__name__)


def _applies(module) -> bool:
    """A transformers DeBERTa-v2 self-attention with relative attention of the kinds handled here."""
    try:
        from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention
    except ImportError:  # pragma: no cover - transformers always ships DeBERTa-v2
        return False
    return (type(module) is DisentangledSelfAttention and module.relative_attention
            and set(module.pos_att_type) <= {"c2p", "p2c"} and module.pos_ebd_size > 0)


def _pick(scores: torch.Tensor, columns: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``out[n, i, j] = scores[n, i, columns[i, j]]`` for ``scores`` of shape ``[..., L, width]``.

    One flat index of ``L × L`` entries for every leading row (texts × heads),
    instead of a ``torch.gather`` index expanded to ``[texts × heads, L, L]``.
    """
    length = columns.size(0)
    flat = (torch.arange(length).unsqueeze(1) * width + columns).reshape(-1)
    rows = scores.reshape(-1, length * width)
    return rows.index_select(1, flat).view(-1, length, length)


def windowed_attention_bias(self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor):
    """transformers' ``DisentangledSelfAttention.disentangled_attention_bias`` for self-attention.

    ``query_layer`` and ``key_layer`` are ``[texts × heads, L, head_dim]``;
    ``relative_pos`` is the encoder's ``[1, L, L]`` (bucketed) relative positions.
    """
    heads = self.num_attention_heads
    span = self.pos_ebd_size
    length = query_layer.size(-2)
    head_dim = query_layer.size(-1)
    relative = relative_pos.reshape(relative_pos.size(-2), relative_pos.size(-1)).to(torch.long)

    # Rows of the relative-position table that positions -(L-1) .. L-1 can reach
    # (bucketed positions are never farther than the distance itself).
    start = torch.clamp(torch.tensor(span) - length + 1, min=0)
    end = torch.clamp(torch.tensor(span) + length, max=2 * span)
    rows = torch.arange(start, end)
    width = end - start
    table = rel_embeddings[0:span * 2, :].unsqueeze(0)

    def projected(projection):
        # [heads, 2·span, head_dim]: depends on weights only (constant-folded), then windowed.
        return self.transpose_for_scores(projection(table), heads).index_select(1, rows)

    if self.share_att_key:
        pos_query = projected(self.query_proj) if "p2c" in self.pos_att_type else None
        pos_key = projected(self.key_proj) if "c2p" in self.pos_att_type else None
    else:
        pos_key = projected(self.pos_key_proj) if "c2p" in self.pos_att_type else None
        pos_query = projected(self.pos_query_proj) if "p2c" in self.pos_att_type else None

    score = 0
    scale = torch.sqrt(torch.tensor(head_dim, dtype=torch.float) * scale_factor)
    if "c2p" in self.pos_att_type:
        queries = query_layer.view(-1, heads, length, head_dim)
        c2p = torch.matmul(queries, pos_key.transpose(-1, -2).unsqueeze(0))   # [texts, heads, L, width]
        columns = torch.clamp(relative + span, 0, span * 2 - 1) - start
        score += _pick(c2p, columns, width) / scale.to(dtype=c2p.dtype)
    if "p2c" in self.pos_att_type:
        keys = key_layer.view(-1, heads, length, head_dim)
        p2c = torch.matmul(keys, pos_query.transpose(-1, -2).unsqueeze(0))     # [texts, heads, L, width]
        columns = torch.clamp(-relative + span, 0, span * 2 - 1) - start
        score += _pick(p2c, columns, width).transpose(-1, -2) / scale.to(dtype=p2c.dtype)
    return score


@contextlib.contextmanager
def exportable(encoder: torch.nn.Module):
    """Within the block, ``encoder``'s DeBERTa-v2 attention modules use :func:`windowed_attention_bias`.

    Modules of any other kind are left alone. Restored on exit, so only the
    traced (exported) graph differs; the PyTorch encoder stays the library's.
    """
    patched = [m for m in encoder.modules() if _applies(m)]
    for module in patched:
        module.disentangled_attention_bias = types.MethodType(windowed_attention_bias, module)
    if patched:
        logger.info("exporting %d DeBERTa-v2 attention layers with windowed relative-position scores", len(patched))
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.disentangled_attention_bias
