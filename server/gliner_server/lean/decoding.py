"""Decoding a span model's logits into the library's result dicts, numpy only.

A port of gliner2 2.1.0 ``ExtractorRuntimeMixin`` (``gliner2/inference/runtime.py``,
Apache-2.0) for the span architecture on the CPU: ``_extract_sample`` and the
methods it reaches (classification decoding, ``_extract_span_result``,
``_decode_span_probabilities``, ``_extract_entities``, ``_extract_relations``,
``_extract_structures``, ``_find_spans``, ``_format_spans``,
``_find_choice_idx``) plus ``candidate_decoder.finalize_spans``. The methods of
:class:`SpanDecoder` below the marked line are the library's source with four
mechanical substitutions (``torch.sigmoid`` -> a float32 sigmoid,
``torch.where(cond)`` -> ``np.nonzero(cond)``, ``torch.argmax(p).item()`` ->
``np.argmax(p)``, tensor type hints -> ndarray): same branches, same order, same
comparisons, and ``.item()`` still reads a Python float from a float32 score.
What differs is the input: the classifier's logits arrive computed (by
:mod:`.heads`), where the library runs its classifier inside the decoding.

Entity attribute groups (a library schema feature the service's schemas never
use) are not ported; a schema with them is refused.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .chunking import normalize_overlap_policy, resolve_overlaps

RawSpan = tuple[str, float, int, int]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float32, copy=False)))).astype(np.float32, copy=False)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)


def finalize_spans(raw_spans: Sequence[RawSpan], *, dtype: str = "list", gate_open: bool = True,
                   suppress: bool = True, overlap_policy: str | None = None) -> list[RawSpan]:
    """gliner2 2.1.0 ``candidate_decoder.finalize_spans``: confidence-first greedy, or an explicit policy."""
    if not gate_open:
        return []
    if overlap_policy is None:
        ranked = sorted(raw_spans, key=lambda span: span[1], reverse=True)
        if suppress:
            spans: list[RawSpan] = []
            for candidate in ranked:
                candidate_start, candidate_end = candidate[2], candidate[3]
                if any(candidate_start < existing[3] and existing[2] < candidate_end for existing in spans):
                    continue
                spans.append(candidate)
        else:
            spans = ranked
    else:
        spans = resolve_overlaps(raw_spans, overlap_policy, score=lambda span: span[1],
                                 start=lambda span: span[2], end=lambda span: span[3])
    return spans if dtype == "list" else spans[:1]


def decode_sample(*, schema_tokens_list, task_types, text_tokens, original_text, schema: dict, start_mapping,
                  end_mapping, threshold: float, metadata: dict, include_confidence: bool, include_spans: bool,
                  raw_span_logits: list[np.ndarray | None], pred_counts: list[int],
                  cls_logits: list[np.ndarray | None], embedded: Sequence[bool]) -> dict[str, Any]:
    """One sample's result dict, as ``_extract_sample`` returns it (before ``format_results``)."""
    return _DECODER.extract_sample(
        schema_tokens_list=schema_tokens_list, task_types=task_types, text_tokens=text_tokens,
        original_text=original_text, schema=schema, start_mapping=start_mapping, end_mapping=end_mapping,
        threshold=threshold, metadata=metadata, include_confidence=include_confidence,
        include_spans=include_spans, raw_span_logits=raw_span_logits, pred_counts=pred_counts,
        cls_logits=cls_logits, embedded=embedded)


class SpanDecoder:
    """Stateless: the library's decoding methods, bound to one shared instance."""

    def extract_sample(self, *, schema_tokens_list, task_types, text_tokens, original_text, schema, start_mapping,
                       end_mapping, threshold, metadata, include_confidence, include_spans, raw_span_logits,
                       pred_counts, cls_logits, embedded) -> dict[str, Any]:
        """``_extract_sample`` with the classifier's logits given (``cls_logits[i]`` for task i) and, per task,
        whether it has marker embeddings (``embedded[i]``)."""
        results: dict[str, Any] = {}
        raw_span_logits = raw_span_logits or [None] * len(task_types)
        pred_counts = pred_counts or [0] * len(task_types)
        cls_fields = {}
        for struct in schema.get("json_structures", []):
            for parent, fields in struct.items():
                for fname, fval in fields.items():
                    if isinstance(fval, dict) and "choices" in fval:
                        cls_fields[f"{parent}.{fname}"] = fval["choices"]
        text_len = len(start_mapping)
        for i, (schema_tokens, task_type) in enumerate(zip(schema_tokens_list, task_types)):
            # The library skips a task with no marker embeddings (``not schema_embs[i]``).
            if len(schema_tokens) < 4 or not embedded[i]:
                continue
            schema_name = schema_tokens[2].split(" [DESCRIPTION] ")[0]
            if task_type == "classifications":
                if cls_logits[i] is None:
                    continue
                self._extract_classification_result(results, schema, cls_logits[i], schema_tokens)
            else:
                self._extract_span_result(
                    results, schema_name, task_type, raw_span_logits[i], pred_counts[i], schema_tokens,
                    text_tokens, text_len, original_text, start_mapping, end_mapping, threshold, metadata,
                    cls_fields, include_confidence, include_spans)
        return results

    def _extract_classification_result(self, results, schema, logits, schema_tokens, temperature: float = 1.0):
        """``_extract_classification_result`` + ``_compute_classification_probabilities`` on given logits."""
        cls_config = self._resolve_classification_config(schema_tokens[2], schema.get("classifications", []))
        if cls_config is None:
            return
        schema_name = cls_config["task"]
        if temperature <= 0:
            raise ValueError("classification temperature must be > 0")
        logits = (logits / np.float32(temperature)).astype(np.float32, copy=False)
        activation = cls_config.get("class_act", "auto")
        is_multi = cls_config.get("multi_label", False)
        if activation == "sigmoid":
            probs = _sigmoid(logits)
        elif activation == "softmax":
            probs = _softmax(logits)
        else:
            probs = _sigmoid(logits) if is_multi else _softmax(logits)
        self._decode_classification_probabilities(results, schema_name, cls_config, probs)

    def _resolved_overlap_policy(self, overlap_policy: str | None = None) -> str | None:
        """Span architecture: ``None`` (confidence-first greedy) unless a policy is given."""
        return normalize_overlap_policy(overlap_policy) if overlap_policy is not None else None

    def _metadata_overlap_policy(self, metadata: dict[str, Any]) -> str | None:
        return self._resolved_overlap_policy(metadata.get("_overlap_policy"))

    def _extract_entities_with_attributes(self, *args, **kwargs):
        raise ValueError("entity attribute groups are not supported by the lean runtime")

    # ---- gliner2 2.1.0 ExtractorRuntimeMixin methods, ported mechanically (see the module docstring) ----

    @staticmethod
    def _resolve_classification_config(
        prompt_str: str, classifications: list[dict]
    ) -> dict | None:
        """Find the classification config that owns ``prompt_str``."""
        best = None
        for config in classifications:
            task = config.get("task", "")
            if not task or not prompt_str.startswith(task):
                continue
            rest = prompt_str[len(task) :]
            if (rest == "" or rest[0] in (":", " ")) and (best is None or len(task) > len(best.get("task", ""))):
                best = config
        if best is None:
            best = next(
                (c for c in classifications if prompt_str.startswith(c.get("task", ""))), None
            )
        return best

    @staticmethod
    def _decode_classification_probabilities(
        results: dict,
        schema_name: str,
        cls_config: dict,
        probs: np.ndarray,
    ) -> None:
        """Decode precomputed probabilities on either CPU or an accelerator."""
        labels = cls_config["labels"]
        cls_threshold = cls_config.get("cls_threshold", 0.5)
        is_multi = cls_config.get("multi_label", False)

        if is_multi:
            chosen = [
                (labels[j], probs[j].item())
                for j in range(len(labels))
                if probs[j].item() >= cls_threshold
            ]
            if not chosen:
                best = int(np.argmax(probs))
                chosen = [(labels[best], probs[best].item())]
            top_k = cls_config.get("top_k")
            if top_k is not None:
                chosen = sorted(chosen, key=lambda pair: pair[1], reverse=True)[:top_k]
            results[schema_name] = chosen
        else:
            best = int(np.argmax(probs))
            results[schema_name] = (labels[best], probs[best].item())

    def _extract_span_result(
        self,
        results: dict,
        schema_name: str,
        task_type: str,
        raw_logits: np.ndarray | None,
        pred_count: int,
        schema_tokens: list[str],
        text_tokens: list[str],
        text_len: int,
        original_text: str,
        start_mapping: list[int],
        end_mapping: list[int],
        threshold: float,
        metadata: dict,
        cls_fields: dict,
        include_confidence: bool,
        include_spans: bool,
    ):
        """Decode precomputed direct span logits for one schema task."""
        field_names = []
        for j in range(len(schema_tokens) - 1):
            if schema_tokens[j] in ("[E]", "[C]", "[R]"):
                field_names.append(schema_tokens[j + 1])

        if not field_names:
            results[schema_name] = [] if schema_name == "entities" else {}
            return

        if pred_count <= 0 or raw_logits is None:
            if schema_name == "entities" or task_type == "relations":
                results[schema_name] = []
            else:
                results[schema_name] = {}
            return

        span_scores = _sigmoid(raw_logits)

        self._decode_span_probabilities(
            results,
            schema_name,
            task_type,
            field_names,
            span_scores,
            raw_logits,
            pred_count,
            text_len,
            text_tokens,
            original_text,
            start_mapping,
            end_mapping,
            threshold,
            metadata,
            cls_fields,
            include_confidence,
            include_spans,
        )

    def _decode_span_probabilities(
        self,
        results: dict,
        schema_name: str,
        task_type: str,
        field_names: list[str],
        span_scores: np.ndarray,
        raw_logits: np.ndarray,
        pred_count: int,
        text_len: int,
        text_tokens: list[str],
        original_text: str,
        start_mapping: list[int],
        end_mapping: list[int],
        threshold: float,
        metadata: dict,
        cls_fields: dict,
        include_confidence: bool,
        include_spans: bool,
    ) -> None:
        """Decode precomputed span probabilities without running model layers."""
        if schema_name == "entities":
            if metadata.get("entity_attribute_groups"):
                results[schema_name] = self._extract_entities_with_attributes(
                    field_names,
                    span_scores,
                    raw_logits,
                    text_len,
                    original_text,
                    start_mapping,
                    end_mapping,
                    threshold,
                    metadata,
                    include_confidence,
                    include_spans,
                )
            else:
                results[schema_name] = self._extract_entities(
                    field_names,
                    span_scores,
                    text_len,
                    text_tokens,
                    original_text,
                    start_mapping,
                    end_mapping,
                    threshold,
                    metadata,
                    include_confidence,
                    include_spans,
                )
        elif task_type == "relations":
            results[schema_name] = self._extract_relations(
                schema_name,
                field_names,
                span_scores,
                pred_count,
                text_len,
                text_tokens,
                original_text,
                start_mapping,
                end_mapping,
                threshold,
                metadata,
                include_confidence,
                include_spans,
            )
        else:
            results[schema_name] = self._extract_structures(
                schema_name,
                field_names,
                span_scores,
                pred_count,
                text_len,
                text_tokens,
                original_text,
                start_mapping,
                end_mapping,
                threshold,
                metadata,
                cls_fields,
                include_confidence,
                include_spans,
            )

    def _extract_entities(
        self,
        entity_names: list[str],
        span_scores: np.ndarray,
        text_len: int,
        text_tokens: list[str],
        text: str,
        start_map: list[int],
        end_map: list[int],
        threshold: float,
        metadata: dict,
        include_confidence: bool,
        include_spans: bool,
    ) -> list[dict]:
        """Extract entity results."""
        scores = span_scores[0, :, -text_len:]
        entity_results = OrderedDict()

        for name in metadata.get("entity_order", entity_names):
            if name not in entity_names:
                continue

            idx = entity_names.index(name)
            meta = metadata.get("entity_metadata", {}).get(name, {})
            meta_threshold = meta.get("threshold")
            dtype = meta.get("dtype", "list")
            validators = meta.get("validators", [])

            entity_scores = scores[idx]
            ent_threshold = float(meta_threshold) if meta_threshold is not None else threshold

            spans = self._find_spans(
                entity_scores, ent_threshold, text_len, text, start_map, end_map
            )
            if validators:
                spans = [
                    span
                    for span in spans
                    if all(validator.validate(span[0]) for validator in validators)
                ]
            spans = finalize_spans(
                spans, dtype=dtype, overlap_policy=self._metadata_overlap_policy(metadata)
            )

            if dtype == "list":
                entity_results[name] = self._format_spans(
                    spans, include_confidence, include_spans, already_finalized=True
                )
            elif spans:
                text_val, conf, char_start, char_end = spans[0]
                if include_spans and include_confidence:
                    entity_results[name] = {
                        "text": text_val,
                        "confidence": conf,
                        "start": char_start,
                        "end": char_end,
                    }
                elif include_spans:
                    entity_results[name] = {"text": text_val, "start": char_start, "end": char_end}
                elif include_confidence:
                    entity_results[name] = {"text": text_val, "confidence": conf}
                else:
                    entity_results[name] = text_val
            else:
                entity_results[name] = "" if not include_spans and not include_confidence else None

        return [entity_results] if entity_results else []

    def _extract_relations(
        self,
        rel_name: str,
        field_names: list[str],
        span_scores: np.ndarray,
        count: int,
        text_len: int,
        text_tokens: list[str],
        text: str,
        start_map: list[int],
        end_map: list[int],
        threshold: float,
        metadata: dict,
        include_confidence: bool,
        include_spans: bool,
    ) -> list[tuple[str, str] | dict]:
        """Extract relation results with optional confidence and position info."""
        instances = []

        rel_threshold = threshold
        if rel_name in metadata.get("relation_metadata", {}):
            meta_threshold = metadata["relation_metadata"][rel_name].get("threshold")
            rel_threshold = meta_threshold if meta_threshold is not None else threshold

        ordered_fields = metadata.get("field_orders", {}).get(rel_name, field_names)

        for inst in range(count):
            scores = span_scores[inst, :, -text_len:]
            values = []
            field_data = []

            for fname in ordered_fields:
                if fname not in field_names:
                    continue
                fidx = field_names.index(fname)
                spans = self._find_spans(
                    scores[fidx], rel_threshold, text_len, text, start_map, end_map
                )
                spans = finalize_spans(
                    spans, overlap_policy=self._metadata_overlap_policy(metadata)
                )

                if spans:
                    text_val, conf, char_start, char_end = spans[0]
                    values.append(text_val)
                    field_data.append(
                        {"text": text_val, "confidence": conf, "start": char_start, "end": char_end}
                    )
                else:
                    values.append(None)
                    field_data.append(None)

            if len(values) == 2 and values[0] and values[1]:
                if include_spans and include_confidence:
                    instances.append({"head": field_data[0], "tail": field_data[1]})
                elif include_spans:
                    instances.append(
                        {
                            "head": {
                                "text": field_data[0]["text"],
                                "start": field_data[0]["start"],
                                "end": field_data[0]["end"],
                            },
                            "tail": {
                                "text": field_data[1]["text"],
                                "start": field_data[1]["start"],
                                "end": field_data[1]["end"],
                            },
                        }
                    )
                elif include_confidence:
                    instances.append(
                        {
                            "head": {
                                "text": field_data[0]["text"],
                                "confidence": field_data[0]["confidence"],
                            },
                            "tail": {
                                "text": field_data[1]["text"],
                                "confidence": field_data[1]["confidence"],
                            },
                        }
                    )
                else:
                    instances.append((values[0], values[1]))

        return instances

    def _extract_structures(
        self,
        struct_name: str,
        field_names: list[str],
        span_scores: np.ndarray,
        count: int,
        text_len: int,
        text_tokens: list[str],
        text: str,
        start_map: list[int],
        end_map: list[int],
        threshold: float,
        metadata: dict,
        cls_fields: dict,
        include_confidence: bool,
        include_spans: bool,
    ) -> list[dict]:
        """Extract structure results with optional position tracking."""
        instances = []
        ordered_fields = metadata.get("field_orders", {}).get(struct_name, field_names)

        for inst in range(count):
            scores = span_scores[inst, :, -text_len:]
            instance = OrderedDict()

            for fname in ordered_fields:
                if fname not in field_names:
                    continue

                fidx = field_names.index(fname)
                field_key = f"{struct_name}.{fname}"
                meta = metadata.get("field_metadata", {}).get(field_key, {})
                meta_threshold = meta.get("threshold")
                field_threshold = meta_threshold if meta_threshold is not None else threshold
                dtype = meta.get("dtype", "list")
                validators = meta.get("validators", [])

                if field_key in cls_fields:
                    choices = cls_fields[field_key]
                    prefix_scores = span_scores[inst, fidx, :-text_len]

                    if dtype == "list":
                        selected = []
                        seen = set()
                        for choice in choices:
                            if choice in seen:
                                continue
                            idx = self._find_choice_idx(choice, text_tokens[:-text_len])
                            if idx >= 0 and idx < prefix_scores.shape[0]:
                                score = prefix_scores[idx, 0].item()
                                if score >= field_threshold:
                                    if include_confidence:
                                        selected.append({"text": choice, "confidence": score})
                                    else:
                                        selected.append(choice)
                                    seen.add(choice)
                        instance[fname] = selected
                    else:
                        best = None
                        best_score = -1.0
                        for choice in choices:
                            idx = self._find_choice_idx(choice, text_tokens[:-text_len])
                            if idx >= 0 and idx < prefix_scores.shape[0]:
                                score = prefix_scores[idx, 0].item()
                                if score > best_score:
                                    best_score = score
                                    best = choice
                        if best and best_score >= field_threshold:
                            if include_confidence:
                                instance[fname] = {"text": best, "confidence": best_score}
                            else:
                                instance[fname] = best
                        else:
                            instance[fname] = None
                else:
                    spans = self._find_spans(
                        scores[fidx], field_threshold, text_len, text, start_map, end_map
                    )

                    if validators:
                        spans = [s for s in spans if all(v.validate(s[0]) for v in validators)]
                    spans = finalize_spans(
                        spans, dtype=dtype, overlap_policy=self._metadata_overlap_policy(metadata)
                    )

                    if dtype == "list":
                        instance[fname] = self._format_spans(
                            spans, include_confidence, include_spans, already_finalized=True
                        )
                    else:
                        if spans:
                            text_val, conf, char_start, char_end = spans[0]

                            if include_spans and include_confidence:
                                instance[fname] = {
                                    "text": text_val,
                                    "confidence": conf,
                                    "start": char_start,
                                    "end": char_end,
                                }
                            elif include_spans:
                                instance[fname] = {
                                    "text": text_val,
                                    "start": char_start,
                                    "end": char_end,
                                }
                            elif include_confidence:
                                instance[fname] = {"text": text_val, "confidence": conf}
                            else:
                                instance[fname] = text_val
                        else:
                            instance[fname] = None

            if any(v is not None and v != [] for v in instance.values()):
                instances.append(instance)

        return instances

    def _find_spans(
        self,
        scores: np.ndarray,
        threshold: float,
        text_len: int,
        text: str,
        start_map: list[int],
        end_map: list[int],
    ) -> list[tuple[str, float, int, int]]:
        """Find valid spans above threshold. Returns (text, confidence, char_start, char_end)."""
        valid = np.nonzero(scores >= threshold)
        starts, widths = valid

        spans = []
        for start, width in zip(starts.tolist(), widths.tolist()):
            end = start + width + 1
            if 0 <= start < text_len and end <= text_len:
                try:
                    char_start = start_map[start]
                    char_end = end_map[end - 1]
                    text_span = text[char_start:char_end].strip()
                except (IndexError, KeyError):
                    continue

                if text_span:
                    conf = scores[start, width].item()
                    spans.append((text_span, conf, char_start, char_end))

        return spans

    def _format_spans(
        self,
        spans: list[tuple],
        include_confidence: bool,
        include_spans: bool = False,
        already_finalized: bool = False,
        overlap_policy: str | None = None,
    ) -> list[str] | list[dict] | list[tuple]:
        """Format entity spans after canonical overlap decoding."""
        if not spans:
            return []
        if already_finalized:
            selected = spans
        else:
            selected = finalize_spans(
                spans, overlap_policy=self._resolved_overlap_policy(overlap_policy)
            )

        if include_spans and include_confidence:
            return [
                {"text": s[0], "confidence": s[1], "start": s[2], "end": s[3]} for s in selected
            ]
        elif include_spans:
            return [{"text": s[0], "start": s[2], "end": s[3]} for s in selected]
        elif include_confidence:
            return [{"text": s[0], "confidence": s[1]} for s in selected]
        else:
            return [s[0] for s in selected]

    def _find_choice_idx(self, choice: str, tokens: list[str]) -> int:
        """Find index of choice in tokens."""
        choice_lower = choice.lower()
        for i, tok in enumerate(tokens):
            if tok.lower() == choice_lower:
                return i
        return -1


_DECODER = SpanDecoder()
