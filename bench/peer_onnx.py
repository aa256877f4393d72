"""A peer runtime for timing beside the lean one: ONNX Runtime on a monolithic ONNX export of a GLiNER2 span model.

This is what a user who picks ONNX Runtime for GLiNER2 on the CPU ends up with:
the stock transformers DeBERTa encoder and the library's entity heads, exported
by ``torch.onnx.export``'s default (torch.export-based) exporter into one ONNX
graph with dynamic batch, token, word and label axes, and run by
``onnxruntime`` with every graph optimisation on (the TorchScript exporter,
``dynamo=False``, cannot export the span head's ``unfold`` on a dynamic
length); preprocessing and decoding are small ports of the ``gliner2`` 2.1.0
library's, on ``tokenizers`` and numpy. None of this project's runtime code (windowed attention, batched
heads, OpenVINO) is used.

**Inside the graph** (``model.onnx``), for a batch of texts that share one entity schema:

* inputs ``input_ids`` / ``attention_mask`` ``[B, T]`` (the library's collated
  prompt + text subwords, no [CLS]/[SEP]), ``word_positions`` ``[B, W]`` (first
  subword of every text word), ``text_lengths`` ``[B]`` (words per text),
  ``prompt_positions`` ``[B]`` (the entity schema's [P] token) and
  ``label_positions`` ``[B, E]`` (its [E] tokens);
* the DeBERTa encoder; the gathers of word-start, [P] and [E] embeddings
  (``token_pooling="first"``, the library's fast path);
* the count head: ``counts = argmax(count_pred([P]))`` (output ``counts [B]``);
* the count-aware queries: ``count_embed`` unrolled for structural instance 0
  only, which is all the entity decoder reads (``struct_proj[:1]``); instance 0
  does not depend on the predicted count (the GRU is causal, the projector is
  row-wise), so it equals the library's query for any count >= 1;
* the span head: ``span_rep.score_queries`` (start/end projections, the
  factorised span MLP folded into the queries), ``sigmoid``, and spans running
  past a text's last word set to 0 (output ``scores [B, E, W, max_width]``).

**In numpy** (after the graph): the count gate (a text whose predicted count is
0 gets ``{"entities": {}}``, as in the library), thresholding, character offsets,
the library's confidence-first greedy removal of overlapping spans per label, and
its result format. Before it: word splitting, subword ids and index tensors.

Export needs torch, transformers, gliner2, onnx and onnxscript (``.venv``); the
runtime only onnxruntime, tokenizers and numpy (it imports no torch)::

    .venv/bin/pip install onnx onnxscript onnxruntime     # adds to .venv, changes nothing in it
    .venv/bin/python bench/peer_onnx.py [--tiny] [--runs 20]

which checks the peer against ``GLiNER2.extract_entities`` (tiny checkpoint,
and without ``--tiny`` a well-conditioned base-shaped one) and prints median
latencies on the random deberta-v3-base-shaped timing checkpoint.

From another bench: ``OnnxPeer.build(checkpoint, work_dir)`` then
``peer.extract_entities(texts, labels, threshold)``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

GRAPH_FORMAT = 1  # part of the export cache key: bump when the exported graph changes
OPSET = 18  # the dynamo exporter's own; 17 makes it run a version converter that cannot convert Pad
SUPPORTED_LIBRARY = "2.1.0"
INPUTS = ("input_ids", "attention_mask", "word_positions", "text_lengths", "prompt_positions", "label_positions")
OUTPUTS = ("counts", "scores")


# =============================================================================
# Export (torch; runs in .venv)
# =============================================================================

def export_key(checkpoint: Path) -> str:
    """Cache key of an export: the checkpoint's path and files (name, size, mtime) and the graph format."""
    root = Path(checkpoint).resolve()
    stamp = [str(root), GRAPH_FORMAT]
    stamp += [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
              for p in sorted(root.rglob("*")) if p.is_file()]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def first_instance_queries(count_embed, fields):
    """``count_embed(fields, n)[0]`` for every text at once: fields ``[B, E, D]`` -> queries ``[B, E, D]``.

    ``CountLSTM`` and ``CountLSTMoE`` treat every field row on its own (the GRU's
    batch axis is the fields, the projector/experts are row-wise), so all texts'
    rows are stacked; ``CountLSTMv2``'s transformer attends across the fields of
    one instance, so its rows stay grouped per text (its batch axis).
    """
    from gliner2.layers import CountLSTM, CountLSTMoE, CountLSTMv2

    batch, labels, hidden = fields.shape
    rows = fields.reshape(batch * labels, hidden)
    if isinstance(count_embed, CountLSTMv2):
        step = count_embed.pos_embedding.weight[:1].unsqueeze(1).expand(1, batch * labels, hidden)
        state = count_embed.gru(step, rows)[0].reshape(batch, labels, hidden)
        return count_embed.transformer(state + fields)
    if isinstance(count_embed, (CountLSTM, CountLSTMoE)):
        return count_embed(rows, 1)[0].reshape(batch, labels, hidden)
    raise NotImplementedError(f"counting layer {type(count_embed).__name__}")


def entity_graph(model):
    """The torch module exported as ``model.onnx`` (see the module docstring for what it holds)."""
    import torch

    def gather_rows(hidden, positions):
        """``hidden[b, positions[b, k]]``: ``[B, T, D]``, ``[B, K]`` -> ``[B, K, D]``."""
        return torch.gather(hidden, 1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))

    class EntityGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = model.encoder
            self.span_rep = model.span_rep.span_rep_layer
            self.count_pred = model.count_pred
            self.count_embed = model.count_embed
            self.max_width = model.max_width

        def forward(self, input_ids, attention_mask, word_positions, text_lengths, prompt_positions,
                    label_positions):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            words = gather_rows(hidden, word_positions)
            prompt = gather_rows(hidden, prompt_positions.unsqueeze(1))[:, 0]
            fields = gather_rows(hidden, label_positions)
            counts = self.count_pred(prompt).argmax(dim=-1)
            queries = first_instance_queries(self.count_embed, fields)
            logits = self.span_rep.score_queries(words, queries, text_lengths, mask_invalid=False)
            starts = torch.arange(words.shape[1], device=words.device).unsqueeze(1)
            ends = starts + torch.arange(self.max_width, device=words.device).unsqueeze(0)
            valid = ends.unsqueeze(0) < text_lengths.view(-1, 1, 1)  # [B, W, K]
            scores = torch.sigmoid(logits) * valid.unsqueeze(1).to(logits.dtype)
            return counts, scores

    return EntityGraph().eval()


def export_tokenizer(processor, path: Path) -> None:
    """The processor's tokenizer (with the special tokens gliner2 added) as ``tokenizers`` JSON, checked equal."""
    from gliner_server.conversion.processor_settings import tokenizer_backend

    tokenizer = processor.tokenizer
    copy = tokenizer_backend(tokenizer)   # the converter's own export of the tokenizer
    probes = [*processor.SPECIAL_TOKENS, "(", ")", ",", "|", "entities", "apple", "iphone", "15", "cupertino",
              "type 12", "héllo", "東京", "$2", "e-mail@x.org", "organization", "technology"]
    for word in probes:
        want = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        got = [copy.token_to_id(piece) for piece in copy.encode(word, add_special_tokens=False).tokens]
        got = [tokenizer.unk_token_id if i is None else i for i in got]
        if got != want:
            raise ValueError(f"exported tokenizer differs from the processor's on {word!r}: {got} != {want}")
    copy.save(str(path))


def export_onnx(checkpoint: Path, out_dir: Path) -> Path:
    """Export ``checkpoint``'s entity path into ``out_dir``: model.onnx (+ .data), tokenizer.json, settings.json.

    Written into ``OUT_DIR.partial`` and renamed when complete, so an interrupted
    export is never taken for a cached one.
    """
    import shutil

    import gliner2
    import torch
    from gliner2 import GLiNER2
    from gliner2.processing.word_splitter import WhitespaceTokenSplitter

    started = time.perf_counter()
    model = GLiNER2.from_pretrained(str(checkpoint)).eval()
    processor = model.processor
    if getattr(model, "architecture", "span") != "span":
        raise ValueError("only span checkpoints have this graph")
    if processor.token_pooling != "first" or type(processor.word_splitter) is not WhitespaceTokenSplitter:
        raise ValueError("the port covers token_pooling='first' and the whitespace word splitter only")
    if gliner2.__version__ != SUPPORTED_LIBRARY:
        print(f"warning: ported from gliner2 {SUPPORTED_LIBRARY}, running {gliner2.__version__}", file=sys.stderr)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    export_tokenizer(processor, partial / "tokenizer.json")
    settings = {
        "max_width": int(model.max_width), "unk_token_id": processor.tokenizer.unk_token_id,
        "special_tokens": {name: getattr(processor, name) for name in ("SEP_STRUCT", "SEP_TEXT", "P_TOKEN", "E_TOKEN")},
        "counting_layer": model.config.counting_layer, "checkpoint": str(checkpoint),
        "torch": torch.__version__, "gliner2": gliner2.__version__, "opset": OPSET, "exporter": "torch.export (dynamo)",
    }
    preprocessor = Preprocessor(_load_tokenizer(partial / "tokenizer.json"), settings)
    example = preprocessor.batch(["Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday.", "Hi there."],
                                 ["company", "person", "product"])
    tensors = tuple(torch.from_numpy(example.feeds[name]) for name in INPUTS)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "word_positions": {0: "batch", 1: "words"}, "text_lengths": {0: "batch"},
            "prompt_positions": {0: "batch"}, "label_positions": {0: "batch", 1: "labels"},
            "counts": {0: "batch"}, "scores": {0: "batch", 1: "labels", 2: "words"}}
    with torch.no_grad():
        torch.onnx.export(entity_graph(model), tensors, str(partial / "model.onnx"), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=axes, opset_version=OPSET, dynamo=True)
    settings["export_seconds"] = round(time.perf_counter() - started, 1)
    (partial / "settings.json").write_text(json.dumps(settings, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return out_dir


# =============================================================================
# Preprocessing (tokenizers + numpy): gliner2 2.1.0's SchemaTransformer, entity schemas, inference mode
# =============================================================================

_COMBINING = "".join(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("M"))
_WORD = rf"[\w{_COMBINING}\u200c\u200d]"
_SPLIT = re.compile(  # gliner2.processing.word_splitter.WhitespaceTokenSplitter
    rf"""(?:https?://[^\s]+|www\.[^\s]+)
    |[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{{2,}}
    |@[a-z0-9_]+
    |{_WORD}+(?:[-_]{_WORD}+)*
    |\S""", re.VERBOSE | re.IGNORECASE)


def _load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def normalize_text(text: str) -> str:
    """``SchemaTransformer._normalize_text``: the library appends a full stop when the text lacks end punctuation."""
    if not text:
        return "."
    return text if text.endswith((".", "!", "?")) else text + "."


@dataclass
class Batch:
    """Collated inputs for the graph and what decoding needs per text."""
    feeds: dict[str, np.ndarray]
    texts: list[str]               # normalised texts (the library's character offsets index these)
    starts: list[list[int]]        # character start of every word
    ends: list[list[int]]          # character end of every word


class Preprocessor:
    """Prompt + text -> subword ids and gather positions, as the library's collator builds them for an entity schema."""

    def __init__(self, tokenizer, settings: dict):
        self.tokenizer = tokenizer
        self.unk = settings["unk_token_id"]
        special = settings["special_tokens"]
        self.sep_text, self.p_token, self.e_token = special["SEP_TEXT"], special["P_TOKEN"], special["E_TOKEN"]
        self.ids = lru_cache(maxsize=100_000)(self._ids)

    def _ids(self, word: str) -> tuple[int, ...]:
        """``convert_tokens_to_ids(tokenizer.tokenize(word))``."""
        pieces = self.tokenizer.encode(word, add_special_tokens=False).tokens
        return tuple(self.unk if i is None else i for i in map(self.tokenizer.token_to_id, pieces))

    def prompt(self, labels: list[str]) -> tuple[list[int], int, list[int]]:
        """Ids of ``( [P] entities ( [E] l1 [E] l2 ... ) ) [SEP_TEXT]``, the [P] position and the [E] positions."""
        tokens = ["(", self.p_token, "entities", "("]
        for label in labels:
            tokens += [self.e_token, label]
        tokens += [")", ")", self.sep_text]
        ids, label_positions, prompt_position = [], [], 0
        for index, token in enumerate(tokens):
            if index == 1:
                prompt_position = len(ids)
            elif 4 <= index < len(tokens) - 3 and index % 2 == 0:
                label_positions.append(len(ids))
            ids.extend(self.ids(token))
        return ids, prompt_position, label_positions

    def text(self, text: str) -> tuple[list[int], list[int], list[int], list[int]]:
        """Subword ids of the text's words, each word's first-subword offset, and its character start and end."""
        ids, firsts, starts, ends = [], [], [], []
        for match in _SPLIT.finditer(text):
            firsts.append(len(ids))
            starts.append(match.start())
            ends.append(match.end())
            ids.extend(self.ids(match.group().lower()))
        return ids, firsts, starts, ends

    def batch(self, texts: list[str], labels: list[str]) -> Batch:
        """All texts with the same entity schema, padded into one batch."""
        prompt_ids, prompt_position, label_positions = self.prompt(labels)
        rows, words, starts, ends, normalized = [], [], [], [], []
        for text in texts:
            text = normalize_text(text)
            ids, firsts, word_starts, word_ends = self.text(text)
            rows.append(prompt_ids + ids)
            words.append([len(prompt_ids) + f for f in firsts])
            starts.append(word_starts)
            ends.append(word_ends)
            normalized.append(text)
        size, tokens, width = len(texts), max(map(len, rows)), max(1, max(map(len, words)))
        input_ids = np.zeros((size, tokens), np.int64)
        mask = np.zeros((size, tokens), np.int64)
        word_positions = np.zeros((size, width), np.int64)
        for i, (row, firsts) in enumerate(zip(rows, words)):
            input_ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
            word_positions[i, :len(firsts)] = np.minimum(firsts, len(row) - 1)
        feeds = {"input_ids": input_ids, "attention_mask": mask, "word_positions": word_positions,
                 "text_lengths": np.array([len(w) for w in words], np.int64),
                 "prompt_positions": np.full(size, prompt_position, np.int64),
                 "label_positions": np.tile(np.array(label_positions, np.int64), (size, 1))}
        return Batch(feeds, normalized, starts, ends)


# =============================================================================
# Decoding (numpy): gliner2 2.1.0's _extract_entities / _find_spans / finalize_spans / format_entity_dict
# =============================================================================

def label_spans(scores: np.ndarray, threshold: float, text: str, starts: list[int], ends: list[int]) -> list[dict]:
    """One label's spans: scores ``[W, max_width]`` above ``threshold``, greedy by confidence, no overlaps."""
    words = len(starts)
    found = []
    for start, width in zip(*np.nonzero(scores >= threshold)):  # row-major, as torch.where
        end = start + width + 1
        if end > words:
            continue
        char_start, char_end = starts[start], ends[end - 1]
        surface = text[char_start:char_end].strip()
        if surface:
            found.append((surface, float(scores[start, width]), char_start, char_end))
    kept: list[tuple] = []
    for span in sorted(found, key=lambda s: s[1], reverse=True):  # stable, as the library's sorted()
        if not any(span[2] < other[3] and other[2] < span[3] for other in kept):
            kept.append(span)
    seen, result = set(), []
    for surface, confidence, _, _ in kept:  # format_entity_dict: without offsets, one span per (lower-cased) text
        if surface.lower() not in seen:
            seen.add(surface.lower())
            result.append({"text": surface, "confidence": confidence})
    return result


def decode(batch: Batch, labels: list[str], counts: np.ndarray, scores: np.ndarray, threshold: float) -> list[dict]:
    """The library's ``{"entities": {label: [{"text", "confidence"}]}}`` per text (``include_confidence=True``)."""
    results = []
    for i, text in enumerate(batch.texts):
        if counts[i] <= 0:
            results.append({"entities": {}})
            continue
        words = len(batch.starts[i])
        results.append({"entities": {
            label: label_spans(scores[i, k, :words], threshold, text, batch.starts[i], batch.ends[i])
            for k, label in enumerate(labels)}})
    return results


# =============================================================================
# The peer
# =============================================================================

class OnnxPeer:
    """ONNX Runtime on the monolithic export; ``extract_entities`` runs all texts as one batch."""

    def __init__(self, export_dir: Path):
        import onnxruntime as ort

        self.export_dir = export_dir
        self.settings = json.loads((export_dir / "settings.json").read_text())
        self.preprocessor = Preprocessor(_load_tokenizer(export_dir / "tokenizer.json"), self.settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(export_dir / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    @classmethod
    def build(cls, checkpoint: Path, work_dir: Path) -> OnnxPeer:
        """Export ``checkpoint`` into ``work_dir/onnx-peer-KEY`` unless done already, then open the session."""
        export_dir = Path(work_dir) / f"onnx-peer-{export_key(checkpoint)}"
        if not (export_dir / "settings.json").is_file():
            print(f"exporting {checkpoint} to ONNX in {export_dir} ...", flush=True)
            export_onnx(Path(checkpoint), export_dir)
            print(f"exported in {json.loads((export_dir / 'settings.json').read_text())['export_seconds']} s",
                  flush=True)
        return cls(export_dir)

    def run(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """The graph: ``counts [B]``, ``scores [B, E, W, max_width]``."""
        counts, scores = self.session.run(list(OUTPUTS), batch.feeds)
        return counts, scores

    def extract_entities(self, texts: list[str], labels: list[str], threshold: float = 0.5) -> list[dict]:
        """Entities of every text for ``labels``, in the library's format with confidences."""
        labels = list(dict.fromkeys(labels))  # the library's schema keeps each label once
        batch = self.preprocessor.batch(list(texts), labels)
        counts, scores = self.run(batch)
        return decode(batch, labels, counts, scores, threshold)


# =============================================================================
# Self-check against the library, and timings
# =============================================================================

def _bench_on_path() -> None:
    """Make bench/common.py importable (the self-check and main use its inputs and checkpoints)."""
    bench = str(Path(__file__).resolve().parent)
    if bench not in sys.path:
        sys.path.insert(0, bench)


LABELS_16_EXTRA = ["date", "event", "money", "organization", "city", "country", "title", "technology",
                   "brand", "model", "feature", "time"]


def _compare(got: dict, want: dict, tolerance: float) -> float:
    """Assert equal labels and entity texts; return the largest confidence difference."""
    assert got.keys() == want.keys() and got["entities"].keys() == want["entities"].keys(), (got, want)
    worst = 0.0
    for label, spans in want["entities"].items():
        mine = got["entities"][label]
        assert [s["text"] for s in mine] == [s["text"] for s in spans], (label, mine, spans)
        for a, b in zip(mine, spans):
            worst = max(worst, abs(a["confidence"] - b["confidence"]))
    assert worst <= tolerance, f"confidence differs by {worst}"
    return worst


def check_against_library(checkpoint: Path, peer: OnnxPeer | None = None, work_dir: Path | None = None,
                          tolerance: float = 1e-3) -> dict:
    """Assert the peer's entities equal ``GLiNER2.extract_entities``' (texts; confidences within ``tolerance``).

    Cases: the seed sentence with the 4 labels at thresholds 0.0 and 0.5, alone
    and batched with a longer and a shorter text (padding), with 16 labels, and
    a text of ~330 subwords (past DeBERTa's log-bucketed relative positions).
    Needs a well-conditioned checkpoint: on the timing checkpoint's chaotic random
    encoder (``initializer_range=0.2``) no two float32 runtimes agree (see
    ``agreement_checkpoint``).
    """
    _bench_on_path()
    from common import LABELS, PARAGRAPH, SEED
    from gliner2 import GLiNER2

    peer = peer or OnnxPeer.build(checkpoint, work_dir or Path(checkpoint).parent)
    library = GLiNER2.from_pretrained(str(checkpoint))
    cases = [([SEED], LABELS, 0.0), ([SEED], LABELS, 0.5), ([SEED, PARAGRAPH, "Hi"], LABELS, 0.5),
             ([SEED], LABELS + LABELS_16_EXTRA, 0.5), ([PARAGRAPH * 5], LABELS, 0.5)]
    report = {"cases": 0, "entities": 0, "max_confidence_diff": 0.0}
    for texts, labels, threshold in cases:
        want = library.batch_extract_entities(texts, labels, batch_size=len(texts), threshold=threshold,
                                              include_confidence=True)
        got = peer.extract_entities(texts, labels, threshold)
        for mine, theirs in zip(got, want):
            report["max_confidence_diff"] = max(report["max_confidence_diff"], _compare(mine, theirs, tolerance))
            report["entities"] += sum(map(len, theirs["entities"].values()))
        report["cases"] += 1
    return report


class _Pieces:
    """``tokenize`` on the exported tokenizer (the library processor's, checked equal at export) for text_of_tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens


def timing_cases(peer: OnnxPeer) -> dict[str, tuple[list[str], list[str]]]:
    """The cases of bench/lean_runtime.py."""
    _bench_on_path()
    from common import LABELS, SEED, text_of_tokens

    labels_16 = LABELS + LABELS_16_EXTRA
    labels_64 = labels_16 + [f"type {i}" for i in range(48)]
    text_128 = text_of_tokens(_Pieces(peer.preprocessor.tokenizer), 128)
    return {
        "seed sentence, 4 labels": ([SEED], LABELS),
        "128-token text, 4 labels": ([text_128], LABELS),
        "seed sentence, 16 labels": ([SEED], labels_16),
        "seed sentence, 64 labels": ([SEED], labels_64),
        "16 texts in one call, 4 labels": ([SEED] * 8 + [text_128] * 8, LABELS),
    }


def agreement_checkpoint(cache: Path) -> Path:
    """deberta-v3-base's shapes with a well-conditioned encoder (bench/precision_agreement.py's, same cache path).

    The timing checkpoint's ``initializer_range=0.2`` makes twelve random layers
    chaotic (float32 and float64 runs of one encoder differ by ~7 %), so the
    base-shaped graph is checked on these weights (0.02, as deberta's own).
    """
    from gliner_server.random_checkpoint import deberta_v3_base_shape

    path = cache / "deberta-v3-base-shape-agreement"
    if not (path / "config.json").is_file():
        print(f"building a random deberta-v3-base-shaped checkpoint for agreement runs in {path} ...", flush=True)
        deberta_v3_base_shape(path, initializer_range=0.02, head_scale=1.5)
    return path


def self_check(checkpoint: Path, cache: Path) -> None:
    """Print ``check_against_library``'s result (it raises if the peer and the library disagree)."""
    report = check_against_library(checkpoint, work_dir=cache)
    print(f"self-check on {checkpoint.name}: {report['cases']} cases, {report['entities']} entities, same texts "
          f"as gliner2's extract_entities, max confidence difference {report['max_confidence_diff']:.1e}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Build the peer, check it against the library, print median latencies of bench/lean_runtime.py's cases."""
    _bench_on_path()
    from common import ROOT, bench_checkpoint, cpu_busy_fraction, median_ms

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--tiny", action="store_true", help="time the tiny random checkpoint (smoke run)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)

    self_check(bench_checkpoint(args.cache, tiny=True), args.cache)
    if not args.tiny:
        self_check(agreement_checkpoint(args.cache), args.cache)
    checkpoint = bench_checkpoint(args.cache, tiny=args.tiny)
    started = time.perf_counter()
    peer = OnnxPeer.build(checkpoint, args.cache)
    print(f"timing {checkpoint.name}: peer ready in {time.perf_counter() - started:.1f} s (export in "
          f"{peer.export_dir}, which took {peer.settings['export_seconds']} s); ORT intra-op threads "
          f"{os.cpu_count()}; machine busy (other processes) before timing: {cpu_busy_fraction():.0%}")
    for name, (texts, labels) in timing_cases(peer).items():
        milliseconds = median_ms(functools.partial(peer.extract_entities, texts, labels, 0.5), args.runs)
        print(f"  {name:32s} {milliseconds:9.2f} ms (median of {args.runs})", flush=True)


if __name__ == "__main__":
    main()
