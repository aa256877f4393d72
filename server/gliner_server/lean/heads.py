"""A span model's heads from a bundle: OpenVINO row functions plus numpy, no PyTorch.

After the encoder, gliner2 2.1.0's span path (``SpanExtractor._extract_from_batch``)
computes, per sample and schema task:

* the instance count: ``count_pred`` (an MLP) on the task's ``[P]`` embedding, argmax;
* count-aware queries: ``CountLSTM`` (a GRU unrolled over the count, each step's
  input the learned position embedding, then the ``projector`` MLP on
  ``[hidden, field]``) over the task's field embeddings;
* span logits: ``SpanMarkerV0.score_queries`` of the text's word embeddings
  against those queries, ``(count, fields, words, max_width)``;
* for classification tasks, ``classifier`` (an MLP) on the label embeddings.

The conversion (:mod:`gliner_server.conversion.bundle`) writes each large
projection as an OpenVINO IR mapping rows to rows (the ones the library path
already runs in OpenVINO, :mod:`gliner_server.runtime.openvino_heads`), and the
small tensors (GRU input weights, position embeddings, a bias, sizes) to
``heads.npz``. This module is the glue: :meth:`SpanHeads.span_logits` is the
library path's ``fast_heads._direct_span_logits_batched`` (the library's method
with every task's count embedding run together, exact up to float rounding) on
numpy, and ``_score_queries`` is ``openvino_heads._score_queries`` with its
window arithmetic compiled into one OpenVINO graph (:class:`SpanWindows`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .openvino_compile import ThreadRequests, compile_cached, compile_config, cpu_supports_bf16

PARAMETERS_FILE = "heads.npz"
# The row functions a bundle's heads/ directory holds (IR file stems).
ROW_FUNCTIONS = ("span_token_side", "span_query_side", "count_pred", "classifier",
                 "count_embed_projector", "count_embed_hidden_linear")
_MARKERS = ("[E]", "[C]", "[R]")


class RowFunction:
    """A compiled IR ``(N, in) -> (N, out_k)...``; ``__call__`` takes any leading shape and returns a list."""

    def __init__(self, core, path: Path, properties: dict):
        self.compiled = compile_cached(core, str(path), properties)
        self.in_dim = self.compiled.inputs[0].get_partial_shape()[1].get_length()
        self._out_dims = [o.get_partial_shape()[1].get_length() for o in self.compiled.outputs]
        self._requests = ThreadRequests(self.compiled)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        lead = x.shape[:-1]
        rows = np.ascontiguousarray(x.reshape(-1, self.in_dim), dtype=np.float32)
        if rows.shape[0] == 0:
            return [np.zeros((*lead, d), np.float32) for d in self._out_dims]
        request = self._requests.get()
        request.infer([rows])
        # Copy: output buffers are reused by the request's next inference.
        return [request.get_output_tensor(i).data.copy().reshape(*lead, d) for i, d in enumerate(self._out_dims)]


class SpanWindows:
    """The rest of ``SpanMarkerV0.score_queries`` after its two projections, as one compiled OpenVINO graph.

    ``(start_hidden, end_hidden [B, L, F], folded_queries [B, Q, F], query_bias [B, Q, 1], text_lengths [B])``
    → span logits ``[B, Q, L, max_width]``: every span (start, start + width)
    is ``relu(start_hidden[start] + end_hidden[end] + first_bias) · query + bias``,
    and spans that end past a text's last word are ``-inf``. This is the
    library's window arithmetic (pad, unfold, add, relu, batched matmul, mask),
    written once in numpy before: at ``F = 4 × hidden`` it materialises
    ``B × L × max_width × F`` floats, which numpy walked on one core (over a
    second for 16 texts of 60 words); OpenVINO runs it on every core.
    """

    def __init__(self, core, max_width: int, first_bias: np.ndarray | None, properties: dict):
        import openvino as ov
        from openvino import opset13 as ops

        def i64(values):
            return ops.constant(np.asarray(values, dtype=np.int64))

        start = ops.parameter([-1, -1, -1], ov.Type.f32, name="start_hidden")
        end = ops.parameter([-1, -1, -1], ov.Type.f32, name="end_hidden")
        folded = ops.parameter([-1, -1, -1], ov.Type.f32, name="folded_queries")
        bias = ops.parameter([-1, -1, 1], ov.Type.f32, name="query_bias")
        lengths = ops.parameter([-1], ov.Type.i64, name="text_lengths")
        shape = ops.shape_of(start, ov.Type.i64)
        words, features = ops.gather(shape, i64([1]), i64(0)), ops.gather(shape, i64([2]), i64(0))  # [L], [F]
        ends = ops.add(ops.unsqueeze(ops.range(i64(0), ops.squeeze(words, i64(0)), i64(1), ov.Type.i64),
                                     i64(1)),
                       i64(np.arange(max_width)[None, :]))                                  # (L, W)
        padded = ops.pad(end, i64([0, 0, 0]), i64([0, max_width - 1, 0]), "constant")
        hidden = ops.add(ops.unsqueeze(start, i64(2)), ops.gather(padded, ends, i64(1)))   # (B, L, W, F)
        if first_bias is not None:
            hidden = ops.add(hidden, ops.constant(first_bias.astype(np.float32)))
        hidden = ops.reshape(ops.relu(hidden), ops.concat([i64([0, -1]), features], 0),
                             special_zero=True)                                            # (B, L*W, F)
        logits = ops.add(ops.matmul(folded, hidden, False, True), bias)                    # (B, Q, L*W)
        logits = ops.reshape(logits, i64([0, 0, -1, max_width]), special_zero=True)        # (B, Q, L, W)
        valid = ops.less(ops.unsqueeze(ends, i64(0)), ops.unsqueeze(lengths, i64([1, 2])))  # (B, L, W)
        logits = ops.select(ops.unsqueeze(valid, i64(1)), logits,
                            ops.constant(np.float32(-np.inf)))
        model = ov.Model([logits], [start, end, folded, bias, lengths], "span_windows")
        self.compiled = compile_cached(core, model, properties)
        self._requests = ThreadRequests(self.compiled)

    def __call__(self, start_hidden, end_hidden, folded, bias, text_lengths) -> np.ndarray:
        request = self._requests.get()
        request.infer([start_hidden, end_hidden, folded, bias, np.asarray(text_lengths, dtype=np.int64)])
        # Copy: the output buffer is reused by the request's next inference.
        return request.get_output_tensor(0).data.copy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


class SpanHeads:
    """The heads of a bundle's span model (see the module docstring)."""

    def __init__(self, directory: Path, precision: str, *, cache_dir: Path | None = None, core=None):
        import openvino as ov

        core = core or ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        properties = compile_config(precision)
        if properties["INFERENCE_PRECISION_HINT"] == "bf16" and not cpu_supports_bf16(core):
            properties["INFERENCE_PRECISION_HINT"] = "f32"
        # The heads' IR is fp32 whatever the mode (precision only sets their compile hint), as on the library path.
        self.rows = {name: RowFunction(core, directory / "heads" / f"{name}.xml", properties) for name in ROW_FUNCTIONS}
        with np.load(directory / PARAMETERS_FILE) as params:
            self.max_width = int(params["max_width"])
            self.max_count = int(params["max_count"])
            first_bias = params["span_first_bias"] if params["span_first_bias"].size else None
            self.position_gates = (params["count_pos_embedding"] @ params["gru_weight_ih"].T
                                   + params["gru_bias_ih"]).astype(np.float32)      # (max_count, 3D)
        self.span_windows = SpanWindows(core, self.max_width, first_bias, properties)

    # --- span scoring: openvino_heads._score_queries (SpanMarkerV0.score_queries, eval mode) ---

    def _score_queries(self, h: np.ndarray, queries: np.ndarray, text_lengths: np.ndarray) -> np.ndarray:
        start_hidden, end_hidden = self.rows["span_token_side"](h)                # (B, L, F) each
        folded, bias = self.rows["span_query_side"](queries)                      # (B, Q, F), (B, Q, 1)
        return self.span_windows(start_hidden, end_hidden, folded, bias, text_lengths)

    def _span_scores(self, tokens: list[np.ndarray], queries: list[np.ndarray]) -> list[np.ndarray]:
        """``SpanExtractorModel.compute_span_scores_batched``: pad, score, unpad."""
        lengths = [len(t) for t in tokens]
        counts = [len(q) for q in queries]
        hidden = tokens[0].shape[-1]
        padded_tokens = np.zeros((len(tokens), max(lengths), hidden), np.float32)
        padded_queries = np.zeros((len(tokens), max(counts, default=0), hidden), np.float32)
        for i, (t, q) in enumerate(zip(tokens, queries)):
            padded_tokens[i, :lengths[i]] = t
            padded_queries[i, :counts[i]] = q
        logits = self._score_queries(padded_tokens, padded_queries, np.asarray(lengths))
        return [logits[i, :counts[i], :lengths[i], :] for i in range(len(tokens))]

    # --- count embedding: fast_heads.count_embed_many (CountLSTM.forward for many tasks at once) ---

    def _count_embed_many(self, tasks: Sequence[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        if not tasks:
            return []
        steps = [min(int(n), self.max_count) for _, n in tasks]
        order = sorted(range(len(tasks)), key=lambda i: -steps[i])
        rows = np.concatenate([tasks[i][0] for i in order], axis=0).astype(np.float32, copy=False)
        bounds, start = {}, 0
        for i in order:
            bounds[i] = (start, start + tasks[i][0].shape[0])
            start += tasks[i][0].shape[0]
        active = [0] * steps[order[0]]
        for i in order:
            for t in range(steps[i]):
                active[t] = max(active[t], bounds[i][1])
        hidden_linear = self.rows["count_embed_hidden_linear"]
        hidden, projected = rows, []
        for t, n in enumerate(active):
            h = hidden[:n]
            i_r, i_z, i_n = np.split(self.position_gates[t], 3)
            h_r, h_z, h_n = np.split(hidden_linear(h)[0], 3, axis=-1)
            r = _sigmoid(i_r + h_r)
            z = _sigmoid(i_z + h_z)
            candidate = np.tanh(i_n + r * h_n)
            hidden = ((1 - z) * candidate + z * h).astype(np.float32, copy=False)
            projected.append(np.concatenate([hidden, rows[:n]], axis=-1))
        flat = self.rows["count_embed_projector"](np.concatenate(projected, axis=0))[0]
        offsets = [0]
        for n in active:
            offsets.append(offsets[-1] + n)
        out = []
        for i in range(len(tasks)):
            a, b = bounds[i]
            out.append(np.stack([flat[offsets[t] + a: offsets[t] + b] for t in range(steps[i])]))
        return out

    # --- per batch ---

    def span_logits(self, samples, token_embs: list[np.ndarray], schema_embs: list[list[np.ndarray]]):
        """``(raw_logits, pred_counts)`` per sample and task, as ``fast_heads._direct_span_logits_batched``.

        ``samples`` are the batch's :class:`~.preprocess.LeanSample` (task types
        and prompt tokens); ``schema_embs[i][j]`` is task j's marker embeddings, stacked.
        """
        raw_logits = [[None] * len(s.task_types) for s in samples]
        pred_counts = [[0] * len(s.task_types) for s in samples]
        records, count_inputs = [], []
        for i, sample in enumerate(samples):
            if token_embs[i].size == 0:
                continue
            for j, task_type in enumerate(sample.task_types):
                if task_type == "classifications" or j >= len(schema_embs[i]):
                    continue
                embs, tokens = schema_embs[i][j], sample.schema_tokens_list[j]
                if len(embs) == 0 or len(tokens) < 4:
                    continue
                if not any(tokens[k] in _MARKERS for k in range(len(tokens) - 1)):
                    continue
                records.append((i, j, embs))
                count_inputs.append(embs[0])
        counts = (self.rows["count_pred"](np.stack(count_inputs))[0].argmax(axis=-1).tolist()
                  if count_inputs else [])
        pending = []
        for (i, j, embs), count in zip(records, counts):
            pred_counts[i][j] = int(count)
            if count <= 0 or embs.shape[0] <= 1:
                continue
            steps = 1 if samples[i].task_types[j] == "entities" else int(count)
            pending.append((i, j, embs[1:], steps))
        projections = self._count_embed_many([(fields, n) for _, _, fields, n in pending])
        chunks: list[list[np.ndarray]] = [[] for _ in samples]
        slices, offsets = {}, [0] * len(samples)
        for (i, j, _, _), projection in zip(pending, projections):
            count_dim, field_dim, hidden = projection.shape
            flat = projection.reshape(count_dim * field_dim, hidden)
            slices[(i, j)] = (offsets[i], offsets[i] + flat.shape[0], count_dim, field_dim)
            offsets[i] += flat.shape[0]
            chunks[i].append(flat)
        active = [i for i, c in enumerate(chunks) if c]
        if not active:
            return raw_logits, pred_counts
        scores = self._span_scores([token_embs[i] for i in active], [np.concatenate(chunks[i]) for i in active])
        by_sample = dict(zip(active, scores))
        for (i, j), (a, b, count_dim, field_dim) in slices.items():
            task = by_sample[i][a:b]
            raw_logits[i][j] = task.reshape(count_dim, field_dim, task.shape[-2], task.shape[-1])
        return raw_logits, pred_counts

    def classification_logits(self, samples, schema_embs: list[list[np.ndarray]]) -> list[list[np.ndarray | None]]:
        """Per sample and task: ``classifier(embs[1:]).squeeze(-1)`` for classification tasks, else None.

        All label rows of the batch go through the classifier in one call (it is row-wise).
        """
        out = [[None] * len(s.task_types) for s in samples]
        wanted = [(i, j, schema_embs[i][j][1:]) for i, s in enumerate(samples) for j, t in enumerate(s.task_types)
                  if t == "classifications" and j < len(schema_embs[i]) and len(schema_embs[i][j])
                  and len(s.schema_tokens_list[j]) >= 4]
        if not wanted:
            return out
        logits = self.rows["classifier"](np.concatenate([rows for _, _, rows in wanted]))[0][:, 0]
        at = 0
        for i, j, rows in wanted:
            out[i][j] = logits[at:at + len(rows)]
            at += len(rows)
        return out
