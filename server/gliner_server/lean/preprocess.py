"""Prompt building, tokenization and batch collation for inference, ported from gliner2 2.1.0 `processor.py`.

The library's inference collator (``ExtractorCollator(processor,
is_training=False, max_len=..., architecture="span")``, i.e.
``SchemaTransformer.collate_fn_inference``) turns ``(text, schema_dict)``
pairs into one encoder batch: each schema task becomes a bracketed prompt
(``( [P] name ( [E] label ... ) )``), prompts are joined with ``[SEP_STRUCT]``,
then ``[SEP_TEXT]`` and the text's words follow; every prompt token and word is
tokenized on its own and the subwords are concatenated, without CLS/SEP. The
encoder output is then gathered back per word (one vector per text word) and per
prompt marker (one vector per ``[P]``/``[E]``/``[C]``/``[R]``/``[L]`` slot).

:class:`Preprocessor` reproduces that in inference mode (no sampling, no
shuffling) with the ``tokenizers`` package: ``tokenizer.tokenize(word)`` of the
library's fast tokenizer is ``Tokenizer.encode(word, add_special_tokens=False)
.tokens`` of its backend, and ``convert_tokens_to_ids`` is ``token_to_id`` with
the unknown token's id for a miss (a piece the vocabulary lacks, e.g. a CJK
run a Unigram model emits whole). Gold targets (``structure_labels``) are not
built: inference never reads them.

A record that fails to transform is replaced by the library's fallback record
(``error_policy="fallback"``), e.g. when a label named ``[SEP_STRUCT]`` shifts
later markers past the last task. The boundary architecture's metadata is not
built.

Thread-safety: :meth:`Preprocessor.collate` runs on one worker thread per
model, :meth:`Preprocessor.count_tokens` on request threads. Both only call
``Tokenizer.encode`` (safe concurrently: nothing here changes the tokenizer's
truncation or padding) and a ``functools.lru_cache`` (thread-safe).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from .words import word_splitter

logger = logging.getLogger(__name__)

# gliner2 2.1.0 `SchemaTransformer` class attributes; conversion records them in the settings.
DEFAULT_SPECIAL_TOKENS = {
    "SEP_STRUCT": "[SEP_STRUCT]",
    "SEP_TEXT": "[SEP_TEXT]",
    "P_TOKEN": "[P]",
    "C_TOKEN": "[C]",
    "E_TOKEN": "[E]",
    "R_TOKEN": "[R]",
    "L_TOKEN": "[L]",
    "EXAMPLE_TOKEN": "[EXAMPLE]",
    "OUTPUT_TOKEN": "[OUTPUT]",
    "DESC_TOKEN": "[DESCRIPTION]",
}
POOLINGS = ("first", "mean", "max")
_TOKENIZE_CACHE_SIZE = 50_000  # the library's bound for its per-word tokenize cache


@dataclass
class LeanSample:
    """One collated record: the per-sample fields of the library's ``PreprocessedBatch``.

    ``word_positions`` is ``text_word_first_positions`` (the subword each text
    word's "first"-pooled embedding is read from; a word without subwords keeps
    a placeholder at the current position, as in the library), and
    ``schema_positions`` is ``schema_special_positions`` (per task, the
    positions of its ``[P]`` and child markers). ``word_pieces`` counts each
    text word's subwords and ``marker_positions`` lists, per task, every prompt
    position holding a ``[P]``/``[C]``/``[E]``/``[R]``/``[L]`` id: what the
    library's loop path reads for "mean"/"max", as ``(position, task)`` pairs
    (``None`` for "first").
    """

    text_tokens: list[str]
    original_text: str
    original_schema: dict
    start_mapping: list[int]
    end_mapping: list[int]
    schema_tokens_list: list[list[str]]
    task_types: list[str]
    word_positions: np.ndarray
    schema_positions: list[list[int]]
    length: int
    word_pieces: list[int] = field(default_factory=list)
    marker_positions: list[tuple[int, int]] | None = None


@dataclass
class LeanBatch:
    """gliner2 2.1.0 `PreprocessedBatch` for inference: padded ids and mask, plus per-sample fields."""

    input_ids: np.ndarray  # (batch, seq) int64, zero-padded
    attention_mask: np.ndarray  # (batch, seq) int64
    samples: list[LeanSample]

    def __len__(self) -> int:
        return len(self.samples)


class Preprocessor:
    """gliner2 2.1.0 `SchemaTransformer` in inference mode, on a `tokenizers.Tokenizer`.

    ``tokenizer`` must be the library processor's tokenizer with its special
    tokens added (``conversion.processor_settings.export_tokenizer``);
    ``settings`` is ``conversion.processor_settings.processor_settings(model)``.
    The preprocessor owns the tokenizer: it sets its ``encode_special_tokens``
    and nothing may change its settings afterwards.
    """

    def __init__(self, tokenizer: Tokenizer, settings: Mapping[str, Any]):
        pooling = settings.get("token_pooling", "first")
        if pooling not in POOLINGS:
            raise ValueError(f"token_pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        # Not stored in tokenizer.json: the transformers wrapper sets it from split_special_tokens
        # on every call. Set once here, before any thread encodes.
        tokenizer.encode_special_tokens = bool(settings.get("split_special_tokens", False))
        self.token_pooling = pooling
        self._tokenizer = tokenizer
        # The model's word splitter (the library's ``processor.word_splitter``), for chunking too.
        self.splitter = word_splitter(settings.get("word_splitter"))
        self._unk_id = settings.get("unk_token_id")
        tokens = {**DEFAULT_SPECIAL_TOKENS, **settings.get("special_tokens", {})}
        self.sep_struct = tokens["SEP_STRUCT"]
        self.sep_text = tokens["SEP_TEXT"]
        self.p_token = tokens["P_TOKEN"]
        self.c_token = tokens["C_TOKEN"]
        self.e_token = tokens["E_TOKEN"]
        self.r_token = tokens["R_TOKEN"]
        self.l_token = tokens["L_TOKEN"]
        self.example_token = tokens["EXAMPLE_TOKEN"]
        self.output_token = tokens["OUTPUT_TOKEN"]
        self.desc_token = tokens["DESC_TOKEN"]
        # `_special_ids` of the library: the markers the "mean"/"max" loop path pools.
        self._special_ids = frozenset(
            self._token_id(t) for t in (self.p_token, self.c_token, self.e_token, self.r_token, self.l_token)
        )
        self._subword_ids = lru_cache(maxsize=_TOKENIZE_CACHE_SIZE)(self._encode_word)

    # -- tokenization -----------------------------------------------------------------------------

    def _token_id(self, token: str) -> int:
        """``convert_tokens_to_ids`` of a fast tokenizer: the vocabulary id, else the unknown token's."""
        index = self._tokenizer.token_to_id(token)
        if index is None:
            index = self._unk_id
            if index is None:
                raise ValueError(f"subword {token!r} is not in the vocabulary and the tokenizer has no unknown token")
        return index

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """Ids of one prompt token or text word: ``convert_tokens_to_ids(tokenizer.tokenize(word))``."""
        pieces = self._tokenizer.encode(word, add_special_tokens=False).tokens
        return tuple(self._token_id(piece) for piece in pieces)

    def count_tokens(self, text: str) -> int:
        """Subword tokens of ``text`` as a whole, without special tokens (the service's per-pass limit)."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    # -- prompt -----------------------------------------------------------------------------------

    @staticmethod
    def normalize_text(text: str) -> str:
        """gliner2 2.1.0 `SchemaTransformer._normalize_text`: end with sentence punctuation."""
        if not text:
            return "."
        if not text.endswith((".", "!", "?")):
            return text + "."
        return text

    @staticmethod
    def _classification_prefix(schema: Mapping[str, Any]) -> list[str]:
        """gliner2 2.1.0 `SchemaTransformer._build_classification_prefix` (inference: no shuffling)."""
        prefix_tokens: list[str] = []
        for struct in schema.get("json_structures", []):
            for parent, fields in struct.items():
                inner: list[str] = []
                for fname, fval in fields.items():
                    if not (isinstance(fval, dict) and "value" in fval and "choices" in fval):
                        continue
                    choice_tokens: list[str] = []
                    for i, c in enumerate(fval["choices"]):
                        if i > 0:
                            choice_tokens.append("|")
                        choice_tokens.append(c)
                    inner.extend([fname, "("] + choice_tokens + [")", ","])
                if inner:
                    inner = inner[:-1]
                    prefix_tokens.extend(["(", f"{parent}:", *inner, ")"])
        return prefix_tokens

    def _transform_schema(self, parent: str, fields: list[str], child_prefix: str, prompt: str | None = None,
                          examples: list | None = None, label_descriptions: Mapping[str, str] | None = None,
                          example_mode: str = "both") -> list[str]:
        """gliner2 2.1.0 `SchemaTransformer._transform_schema` (inference: no shuffling)."""
        prompt_str = parent
        if prompt:
            prompt_str = f"{parent}: {prompt}"
        if example_mode in ("descriptions", "both") and label_descriptions:
            for label, desc in label_descriptions.items():
                if label in fields:
                    prompt_str += f" {self.desc_token} {label}: {desc}"
        if example_mode in ("few_shot", "both") and examples:
            for inp, out in examples:
                if out in fields:
                    out_str = out if isinstance(out, str) else ", ".join(out)
                    prompt_str += f" {self.example_token} {inp} {self.output_token} {out_str}"
        tokens = ["(", self.p_token, prompt_str, "("]
        for field_name in fields:
            tokens.extend([child_prefix, field_name])
        tokens.extend([")", ")"])
        return tokens

    def _prompts(self, schema: Mapping[str, Any]) -> tuple[list[list[str]], list[str]]:
        """Schema tokens and task type per task, in the library's task order.

        gliner2 2.1.0 `SchemaTransformer._infer_from_json` with `_process_json_structures`,
        `_process_entities`, `_process_relations`, `_process_classifications` in
        inference mode, keeping only what the prompt needs (not the gold labels).
        """
        schemas: list[list[str]] = []
        types: list[str] = []

        if "json_structures" in schema:
            json_descs = schema.get("json_descriptions", {})
            groups: dict[str, list] = {}
            for item in schema["json_structures"]:
                for parent, fields in item.items():
                    groups.setdefault(parent, []).append(fields)
            for parent, occurrences in groups.items():
                chosen: list[str] = []
                for occ in occurrences:
                    for field_name in occ:
                        if field_name not in chosen:
                            chosen.append(field_name)
                if not chosen:
                    continue
                descs = json_descs.get(parent, {})
                mode = "descriptions" if descs else "none"
                schemas.append(self._transform_schema(parent, chosen, self.c_token, label_descriptions=descs,
                                                      example_mode=mode))
                types.append("json_structures")

        if "entities" in schema:
            entity_fields = list(schema["entities"].keys())
            descs = schema.get("entity_descriptions", {})
            if entity_fields:
                mode = "descriptions" if descs else "none"
                schemas.append(self._transform_schema("entities", entity_fields, self.e_token,
                                                      label_descriptions=descs, example_mode=mode))
                types.append("entities")

        if "relations" in schema:
            relation_descriptions = schema.get("relation_descriptions", {})
            groups = {}
            for item in schema["relations"]:
                for parent, fields in item.items():
                    groups.setdefault(parent, []).append(fields)
            for parent, occurrences in groups.items():
                field_names = list(occurrences[0].keys())
                if not any(all(f in occ for f in field_names) for occ in occurrences):
                    continue
                schemas.append(self._transform_schema(parent, field_names, self.r_token,
                                                      prompt=relation_descriptions.get(parent)))
                types.append("relations")

        if "classifications" in schema:
            for item in schema["classifications"]:
                schemas.append(self._transform_schema(
                    item["task"], list(item["labels"]), self.l_token, prompt=item.get("prompt"),
                    examples=item.get("examples", []), label_descriptions=item.get("label_descriptions", {}) or {},
                    example_mode="both",
                ))
                types.append("classifications")

        return schemas, types

    # -- input formatting -------------------------------------------------------------------------

    def _format_input(self, schema_tokens_list: list[list[str]], text_tokens: list[str]):
        """gliner2 2.1.0 `SchemaTransformer._format_input_with_mapping` (ids and routing positions)."""
        combined: list[str] = []
        for struct in schema_tokens_list:
            combined.extend(struct)
            combined.append(self.sep_struct)
        if combined:
            combined.pop()
        combined.append(self.sep_text)
        combined.extend(text_tokens)

        # Only the structural marker slots route: prompt text may itself tokenize to marker ids.
        marker_indices: set[int] = set()
        offset = 0
        for struct in schema_tokens_list:
            if len(struct) > 1:
                marker_indices.add(offset + 1)
            marker_indices.update(offset + index for index in range(4, len(struct) - 2, 2))
            offset += len(struct) + 1

        pooled = self.token_pooling != "first"
        ids: list[int] = []
        word_positions: list[int] = []
        word_pieces: list[int] = []
        schema_positions: list[list[int]] = [[] for _ in schema_tokens_list]
        marker_positions: list[tuple[int, int]] | None = [] if pooled else None
        current_schema = 0
        found_sep = False

        for orig_idx, token in enumerate(combined):
            position = len(ids)
            pieces = self._subword_ids(token)
            ids.extend(pieces)
            if token == self.sep_text:
                found_sep = True
            elif not found_sep:
                schema_idx = current_schema
                if token == self.sep_struct:
                    current_schema += 1
                if orig_idx in marker_indices:
                    schema_positions[schema_idx].append(position)
                if pooled:
                    marker_positions.extend(
                        (position + k, schema_idx) for k, piece in enumerate(pieces) if piece in self._special_ids)
            else:
                # Each text word is a new word (orig_idx always advances): record its first
                # subword, or a placeholder at the boundary when it has none, as the library does.
                if not pieces:
                    logger.warning("text word %r (index %d) produced no subwords; inserting a placeholder to "
                                   "preserve word/embedding alignment", token, orig_idx)
                word_positions.append(position)
                word_pieces.append(len(pieces))

        return ids, word_positions, word_pieces, schema_positions, marker_positions

    # -- collation --------------------------------------------------------------------------------

    def _transform(self, text: str, schema: dict, max_len: int | None) -> tuple[list[int], LeanSample]:
        """gliner2 2.1.0 `SchemaTransformer._transform_record` in inference mode, without gold targets."""
        prefix = self._classification_prefix(schema)
        text_tokens: list[str] = []
        start_map: list[int] = []
        end_map: list[int] = []
        for token, start, end in self.splitter(text, lower=True):
            text_tokens.append(token)
            start_map.append(start)
            end_map.append(end)
        if max_len is not None and len(text_tokens) > max_len:
            text_tokens = text_tokens[:max_len]
            start_map = start_map[:max_len]
            end_map = end_map[:max_len]
        if prefix:
            text_tokens = prefix + text_tokens

        schema_tokens_list, task_types = self._prompts(schema)
        ids, word_positions, word_pieces, schema_positions, marker_positions = self._format_input(
            schema_tokens_list, text_tokens)
        sample = LeanSample(
            text_tokens=text_tokens,
            original_text=text,
            original_schema=schema,
            start_mapping=start_map,
            end_mapping=end_map,
            schema_tokens_list=schema_tokens_list,
            task_types=task_types,
            word_positions=np.asarray(word_positions, dtype=np.int64),
            schema_positions=schema_positions,
            length=len(ids),
            word_pieces=word_pieces,
            marker_positions=marker_positions,
        )
        return ids, sample

    def _fallback(self, text: str, schema: dict) -> tuple[list[int], LeanSample]:
        """gliner2 2.1.0 `SchemaTransformer._create_fallback_record`.

        As in the library it routes no schema markers (``schema_positions`` is
        empty although there is one task), so gathering it fails as the
        library's extraction does.
        """
        dummy_tokens = ["(", self.p_token, "dummy", "(", self.e_token, "entity", ")", ")"]
        ids, word_positions, word_pieces, _, marker_positions = self._format_input([dummy_tokens], ["."])
        sample = LeanSample(
            text_tokens=["."], original_text=text or ".", original_schema=schema or {}, start_mapping=[0],
            end_mapping=[1], schema_tokens_list=[dummy_tokens], task_types=["entities"],
            word_positions=np.asarray(word_positions, dtype=np.int64), schema_positions=[], length=len(ids),
            word_pieces=word_pieces, marker_positions=marker_positions,
        )
        return ids, sample

    def collate(self, texts: list[str], schema_dicts: list[dict], max_len: int | None = None) -> LeanBatch:
        """gliner2 2.1.0 `collate_fn_inference` (span): ``_collate_batch`` then ``_pad_batch``.

        ``max_len`` caps each text's words (prefix excluded), as the library's
        ``ExtractorCollator(max_len=...)``. ``original_schema`` is a deep copy of
        the schema dict, as in the library.
        """
        if len(texts) != len(schema_dicts):
            raise ValueError(f"{len(texts)} texts but {len(schema_dicts)} schemas")
        records = []
        for text, schema in zip(texts, schema_dicts):
            text = self.normalize_text(text)
            try:
                records.append(self._transform(text, copy.deepcopy(schema), max_len))
            except Exception as exc:  # noqa: BLE001 - the library's error_policy="fallback"
                logger.warning("record failed to transform (%s: %s); substituting a fallback record with no "
                               "gold targets (error_policy='fallback')", type(exc).__name__, exc)
                records.append(self._fallback(text, schema))
        width = max((len(ids) for ids, _ in records), default=0)
        input_ids = np.zeros((len(records), width), dtype=np.int64)
        attention_mask = np.zeros((len(records), width), dtype=np.int64)
        for i, (ids, _) in enumerate(records):
            input_ids[i, :len(ids)] = ids
            attention_mask[i, :len(ids)] = 1
        return LeanBatch(input_ids=input_ids, attention_mask=attention_mask, samples=[s for _, s in records])

    # -- embedding gather -------------------------------------------------------------------------

    def gather(self, batch: LeanBatch, hidden: np.ndarray) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        """gliner2 2.1.0 `SchemaTransformer.extract_embeddings_from_batch` on encoder output ``hidden`` (B, T, H).

        Returns per sample the word embeddings ``(n_words, H)`` and, per task,
        its marker embeddings stacked ``(n_markers, H)`` (the library's list of
        vectors, stacked as its callers do; ``(0, H)`` where the list is empty).
        "first" is the library's fast path; "mean"/"max" its loop path, which
        pools each word's subwords, skips words without any, and takes every
        marker id in the prompt part.
        """
        size = hidden.shape[-1]
        token_embs: list[np.ndarray] = []
        schema_embs: list[list[np.ndarray]] = []
        for i, sample in enumerate(batch.samples):
            row = hidden[i]
            tasks = len(sample.schema_tokens_list)
            if self.token_pooling == "first":
                token_embs.append(row[sample.word_positions])
                positions = [sample.schema_positions[j] for j in range(tasks)]
            else:
                words = [self._pool(row[start:start + count])
                         for start, count in zip(sample.word_positions.tolist(), sample.word_pieces) if count]
                token_embs.append(np.stack(words) if words else np.empty((0, size), dtype=hidden.dtype))
                positions = [[] for _ in range(tasks)]
                for position, task in sample.marker_positions:
                    positions[task].append(position)
            schema_embs.append([row[np.asarray(p, dtype=np.int64)] for p in positions])
        return token_embs, schema_embs

    def _pool(self, pieces: np.ndarray) -> np.ndarray:
        """gliner2 2.1.0 `SchemaTransformer._aggregate` for "mean"/"max"."""
        if len(pieces) == 1:
            return pieces[0]
        if self.token_pooling == "mean":
            return pieces.mean(axis=0, dtype=pieces.dtype)
        return pieces.max(axis=0)
