"""Long texts in overlapping word windows, ported from gliner2 2.1.0 `gliner2/inference/chunking.py`.

The library's ``batch_extract_long`` cuts a text too long for the model's
window into overlapping word windows (:func:`split_text_into_chunks`, counting
words with the model's own word splitter), runs every window with confidences
and offsets, and merges the windows' formatted results into one
(:func:`merge_chunk_results`): offsets are moved to the whole text, the
duplicates the overlaps produce are removed, entity types with a scalar dtype
collapse to their best value, and confidences and offsets are stripped as
asked. The service's long-text path (``runtime.long_text``) calls exactly these
functions; this module is them without gliner2, so that the merged result, key
order and tie-breaking included, is the library's.

The merge resolves overlapping spans with the library's shared resolver
(gliner2 2.1.0 `gliner2.inference.overlap`), ported here too
(:func:`normalize_overlap_policy`, :func:`resolve_overlaps`) because the merge
is what reaches it: span models pass ``overlap_policy=None``, which the merge
reads as ``"disallow"`` for entities and structure lists (maximum-score
non-overlapping spans) and the resolver's default ``"allow"`` for relations.

The word splitter is an argument, as in the library; unlike the library's
``resolve_word_splitter`` it must already be a callable
``splitter(text, lower=...)`` (e.g. from :func:`gliner_server.lean.words.word_splitter`):
names and classes are resolved where the model's settings are read.
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
WordSplitter = Callable[..., Iterator[tuple[str, int, int]]]


@dataclass(frozen=True)
class TextChunk:
    """gliner2 2.1.0 `chunking.TextChunk`: a chunk of text with offsets into the original document."""

    text: str
    start_char: int
    end_char: int
    start_word: int
    end_word: int


def iter_word_offsets(text: str, word_splitter: WordSplitter) -> Iterator[tuple[str, int, int]]:
    """gliner2 2.1.0 `chunking.iter_word_offsets`: words with offsets into ``text``, original case (``lower=False``)."""
    yield from word_splitter(text, lower=False)


def split_text_into_chunks(
    text: str,
    chunk_size: int = 384,
    chunk_overlap: int = 64,
    *,
    word_splitter: WordSplitter,
) -> list[TextChunk]:
    """gliner2 2.1.0 `chunking.split_text_into_chunks`: windows of ``chunk_size`` words, ``chunk_overlap`` shared.

    Consecutive windows start ``chunk_size - chunk_overlap`` words apart; the
    last one ends at the last word. A chunk's text runs from its first word's
    start to its last word's end (the whitespace around it is not part of it).
    A text without words is one chunk of the whole text, with no words.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be greater than 0")
    if chunk_overlap < 0:
        raise ValueError("chunk_overlap must be non-negative")
    if chunk_overlap >= chunk_size:
        raise ValueError("chunk_overlap must be smaller than chunk_size")

    tokens = list(iter_word_offsets(text, word_splitter=word_splitter))
    if not tokens:
        return [TextChunk(text=text, start_char=0, end_char=len(text), start_word=0, end_word=0)]

    chunks: list[TextChunk] = []
    step = chunk_size - chunk_overlap
    start_word = 0
    while start_word < len(tokens):
        end_word = min(start_word + chunk_size, len(tokens))
        start_char = tokens[start_word][1]
        end_char = tokens[end_word - 1][2]
        chunks.append(TextChunk(text=text[start_char:end_char], start_char=start_char, end_char=end_char,
                                start_word=start_word, end_word=end_word))
        if end_word == len(tokens):
            break
        start_word += step
    return chunks


def scalar_entity_labels(metadata: Mapping[str, Any]) -> set:
    """gliner2 2.1.0 `ExtractorRuntimeMixin._scalar_entity_labels`: entity types declared with a non-list dtype.

    The library reads the ``Schema``'s ``_entity_metadata``; the lean path has
    no ``Schema``, but the decoding metadata built from it (the second dict of
    ``_build_schema_dicts_and_metadata``, e.g.
    :func:`gliner_server.lean.schema_dict.library_schema`) carries that same
    dict as ``"entity_metadata"``, so this takes the metadata. A schema given
    to the library as a plain dict has no ``_entity_metadata`` (no scalar
    types), and its metadata's ``entity_metadata`` is ``{}``: the same answer.
    """
    entity_metadata = metadata.get("entity_metadata")
    if not isinstance(entity_metadata, dict):
        return set()
    return {
        name
        for name, meta in entity_metadata.items()
        if isinstance(meta, dict) and meta.get("dtype", "list") != "list"
    }


def remap_result_spans(result: Any, original_text: str, chunk: TextChunk) -> Any:
    """gliner2 2.1.0 `chunking.remap_result_spans`: chunk-local span dicts moved to document offsets, recursively."""
    if isinstance(result, list):
        return [remap_result_spans(item, original_text, chunk) for item in result]
    if isinstance(result, dict):
        remapped = {key: remap_result_spans(value, original_text, chunk) for key, value in result.items()}
        if _is_span_dict(remapped):
            start = int(remapped["start"]) + chunk.start_char
            end = int(remapped["end"]) + chunk.start_char
            remapped["start"] = start
            remapped["end"] = end
            if 0 <= start <= end <= len(original_text):
                remapped["text"] = original_text[start:end]
        return remapped
    return result


def merge_chunk_results(
    original_text: str,
    chunks: list[TextChunk],
    chunk_results: list[dict[str, Any]],
    include_confidence: bool = False,
    include_spans: bool = False,
    scalar_entity_labels: Iterable[str] | None = None,
    overlap_policy: str | None = None,
) -> dict[str, Any]:
    """gliner2 2.1.0 `chunking.merge_chunk_results`: one document's result from its chunks' formatted results.

    ``chunk_results`` must have been formatted with confidences and spans
    (the merge needs both); ``include_confidence``/``include_spans`` choose what
    the merged result keeps. ``scalar_entity_labels`` (see
    :func:`scalar_entity_labels`) collapse to their single best value or None.
    """
    if len(chunks) != len(chunk_results):
        raise ValueError("chunks and chunk_results must have the same length")

    policy = normalize_overlap_policy(overlap_policy, default="disallow")
    scalar_labels = set(scalar_entity_labels or ())
    remapped_results = [remap_result_spans(result, original_text, chunk)
                        for chunk, result in zip(chunks, chunk_results)]
    merged = _merge_result_dicts(remapped_results, scalar_labels, policy)
    return _strip_span_metadata(merged, include_confidence, include_spans)


def _ordered_keys(values: Iterable[Any]) -> list[Any]:
    """Keys of the dicts among ``values``, in order of first appearance (how the library orders merged keys)."""
    keys: list[Any] = []
    seen = set()
    for value in values:
        if not isinstance(value, dict):
            continue
        for key in value:
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return keys


def _merge_result_dicts(results: list[dict[str, Any]], scalar_entity_labels: set | None = None,
                        overlap_policy: str = "disallow") -> dict[str, Any]:
    """gliner2 2.1.0 `chunking._merge_result_dicts`."""
    merged: dict[str, Any] = {}
    for key in _ordered_keys(results):
        values = [result.get(key) for result in results if key in result]
        if key == "entities":
            merged[key] = _merge_entity_maps(values, scalar_entity_labels or set(), overlap_policy)
        elif key == "relation_extraction":
            merged[key] = _merge_relation_maps(values)
        else:
            merged[key] = _merge_values(values, overlap_policy)
    return merged


def _merge_entity_maps(values: list[Any], scalar_labels: set, overlap_policy: str) -> dict[str, Any]:
    """gliner2 2.1.0 `chunking._merge_entity_maps`: per type, every chunk's spans deduplicated under the policy."""
    merged: dict[str, Any] = {}
    for label in _ordered_keys(values):
        items: list[Any] = []
        for value in values:
            if isinstance(value, dict) and label in value:
                items.extend(_as_list(value[label]))
        deduped = _dedupe_items(items, overlap_policy=overlap_policy)
        if label in scalar_labels:
            # As the base API: a non-list entity dtype yields one best value (or None).
            merged[label] = deduped[0] if deduped else None
        else:
            merged[label] = deduped
    return merged


def _merge_relation_maps(values: list[Any]) -> dict[str, list[Any]]:
    """gliner2 2.1.0 `chunking._merge_relation_maps` (no policy: relations are deduplicated, never resolved)."""
    merged: dict[str, list[Any]] = {}
    for label in _ordered_keys(values):
        items: list[Any] = []
        for value in values:
            if isinstance(value, dict) and label in value:
                items.extend(_as_list(value[label]))
        merged[label] = _dedupe_items(items)
    return merged


def _merge_values(values: list[Any], overlap_policy: str = "disallow") -> Any:
    """gliner2 2.1.0 `chunking._merge_values`: classifications keep the most confident, strings the commonest."""
    non_empty = [value for value in values if value not in (None, {}, [])]
    if not non_empty:
        return values[0] if values else None

    if all(_is_classification_dict(value) for value in non_empty):
        return max(non_empty, key=lambda value: value.get("confidence", 0.0))

    if all(isinstance(value, str) for value in non_empty):
        counts = Counter(non_empty)
        return max(non_empty, key=lambda value: (counts[value], -non_empty.index(value)))

    if all(isinstance(value, list) for value in non_empty):
        items: list[Any] = []
        for value in non_empty:
            items.extend(value)
        return _dedupe_items(items, overlap_policy=overlap_policy)

    if all(isinstance(value, dict) for value in non_empty):
        return _merge_nested_dicts(non_empty, overlap_policy)

    return non_empty[0]


def _merge_nested_dicts(values: list[dict[str, Any]], overlap_policy: str = "disallow") -> dict[str, Any]:
    """gliner2 2.1.0 `chunking._merge_nested_dicts`."""
    return {
        key: _merge_values([value.get(key) for value in values if key in value], overlap_policy)
        for key in _ordered_keys(values)
    }


def _dedupe_items(items: list[Any], overlap_policy: str | None = None) -> list[Any]:
    """gliner2 2.1.0 `chunking._dedupe_items`.

    Spans go through the overlap resolver (``None`` meaning ``"allow"``: only
    exact-boundary duplicates collapse) and come out sorted by start, end and
    text; then every other item (relations, structure instances,
    classifications), deduplicated on a confidence-blind key, the more
    confident of two duplicates keeping the first one's place.
    """
    span_items = [item for item in items if _is_span_dict(item)]
    other_items = [item for item in items if not _is_span_dict(item)]

    deduped: list[Any] = []
    if span_items:
        selected = resolve_overlaps(
            span_items,
            overlap_policy,
            default="allow",
            score=lambda item: float(item.get("confidence", 0.0)),
            start=lambda item: int(item["start"]),
            end=lambda item: int(item["end"]),
        )
        deduped.extend(sorted(selected, key=lambda item: (item["start"], item["end"], item.get("text", ""))))

    seen_other: dict[str, int] = {}
    other_deduped: list[Any] = []
    for item in other_items:
        key = _canonical_key(item)
        if key not in seen_other:
            seen_other[key] = len(other_deduped)
            other_deduped.append(item)
        else:
            idx = seen_other[key]
            if _representative_confidence(item) > _representative_confidence(other_deduped[idx]):
                other_deduped[idx] = item
    deduped.extend(other_deduped)
    return deduped


_SPAN_RESERVED = frozenset({"text", "confidence", "start", "end"})


def _strip_span_metadata(value: Any, include_confidence: bool, include_spans: bool) -> Any:
    """gliner2 2.1.0 `chunking._strip_span_metadata`: back to the shapes ``format_results`` gives for the flags."""
    if isinstance(value, list):
        return [_strip_span_metadata(item, include_confidence, include_spans) for item in value]

    if isinstance(value, dict):
        if _is_span_dict(value):
            # Extra keys (entity attribute payloads) are kept whatever the flags, as the base API does.
            extras = {k: v for k, v in value.items() if k not in _SPAN_RESERVED}
            if not include_confidence and not include_spans and not extras:
                return value.get("text", "")
            stripped: dict[str, Any] = {"text": value.get("text", "")}
            if include_confidence and "confidence" in value:
                stripped["confidence"] = value["confidence"]
            if include_spans:
                stripped["start"] = value["start"]
                stripped["end"] = value["end"]
            stripped.update(extras)
            return stripped

        if _is_classification_dict(value):
            if include_confidence:
                return {"label": value["label"], "confidence": value["confidence"]}
            return value["label"]

        # Choice structure fields: a text/confidence pair without offsets.
        if "text" in value and "confidence" in value and "start" not in value and "end" not in value:
            if include_confidence:
                return {"text": value["text"], "confidence": value["confidence"]}
            return value["text"]

        return {key: _strip_span_metadata(item, include_confidence, include_spans) for key, item in value.items()}

    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _is_span_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "text" in value
        and "start" in value
        and "end" in value
        and isinstance(value["start"], int)
        and isinstance(value["end"], int)
    )


def _is_classification_dict(value: Any) -> bool:
    return isinstance(value, dict) and "label" in value and "confidence" in value


def _canonical_key(value: Any) -> str:
    """gliner2 2.1.0 `chunking._canonical_key`: a confidence-blind, key-order-blind identity of a prediction."""
    if isinstance(value, dict):
        return repr(sorted((key, _canonical_key(item)) for key, item in value.items() if key != "confidence"))
    if isinstance(value, list):
        return repr([_canonical_key(item) for item in value])
    return repr(value)


def _representative_confidence(value: Any) -> float:
    """gliner2 2.1.0 `chunking._representative_confidence`: a nested prediction's best confidence (0.0 if none)."""
    if isinstance(value, dict):
        if isinstance(value.get("confidence"), (int, float)):
            return float(value["confidence"])
        nested = [_representative_confidence(v) for v in value.values()]
        return max(nested) if nested else 0.0
    if isinstance(value, list):
        nested = [_representative_confidence(v) for v in value]
        return max(nested) if nested else 0.0
    return 0.0


_POLICY_ALIASES = {
    "allow": "allow",
    "all": "allow",
    "none": "allow",
    "nested": "nested",
    "allow_nested": "nested",
    "flat": "disallow",
    "disallow": "disallow",
    "no_overlap": "disallow",
    "non_overlapping": "disallow",
    "longest": "longest",
    "keep_longest": "longest",
}


def normalize_overlap_policy(policy: str | None, *, default: str | None = None) -> str:
    """gliner2 2.1.0 `overlap.normalize_overlap_policy`: the canonical name; ``None`` means ``default``."""
    selected = default if policy is None else policy
    if selected is None:
        raise ValueError("overlap_policy=None requires an architecture default")
    if not isinstance(selected, str):
        raise TypeError("overlap_policy must be a string or None")
    key = selected.strip().lower().replace("-", "_")
    try:
        return _POLICY_ALIASES[key]
    except KeyError as exc:
        supported = "allow, nested, flat/disallow, longest"
        raise ValueError(f"unknown overlap_policy {selected!r}; expected one of: {supported}") from exc


def resolve_overlaps(
    items: Sequence[T],
    policy: str | None,
    *,
    score: Callable[[T], float],
    start: Callable[[T], int],
    end: Callable[[T], int],
    default: str | None = None,
) -> list[T]:
    """gliner2 2.1.0 `overlap.resolve_overlaps`: half-open spans kept under an overlap policy.

    Exact-boundary duplicates first collapse to their best-ranked one (higher
    score, then earlier start, end, input position). Then ``allow`` keeps all;
    ``nested`` drops crossings of already kept spans; ``longest`` drops spans
    strictly inside another; ``disallow`` keeps the maximum-total-score
    non-overlapping set (weighted interval scheduling; ties prefer more spans,
    then the better ranking). The result is ranked like the first step.
    """
    canonical = normalize_overlap_policy(policy, default=default)
    if not items:
        return []

    indexed = list(enumerate(items))

    def rank_key(row):
        index, item = row
        return (-float(score(item)), int(start(item)), int(end(item)), index)

    ranked = sorted(indexed, key=rank_key)
    distinct = []
    seen_boundaries = set()
    for row in ranked:
        boundaries = (int(start(row[1])), int(end(row[1])))
        if boundaries in seen_boundaries:
            continue
        seen_boundaries.add(boundaries)
        distinct.append(row)

    if canonical == "allow":
        return [item for _, item in distinct]

    if canonical == "nested":
        kept = []
        for row in distinct:
            candidate_start, candidate_end = int(start(row[1])), int(end(row[1]))
            crossing = False
            for _, existing in kept:
                existing_start, existing_end = int(start(existing)), int(end(existing))
                overlaps = candidate_start < existing_end and existing_start < candidate_end
                contains = (candidate_start <= existing_start and existing_end <= candidate_end) or (
                    existing_start <= candidate_start and candidate_end <= existing_end)
                if overlaps and not contains:
                    crossing = True
                    break
            if not crossing:
                kept.append(row)
        return [item for _, item in kept]

    if canonical == "longest":
        kept = []
        for row in distinct:
            candidate_start, candidate_end = int(start(row[1])), int(end(row[1]))
            strictly_contained = any(
                int(start(other)) <= candidate_start
                and candidate_end <= int(end(other))
                and (int(start(other)) < candidate_start or candidate_end < int(end(other)))
                for _, other in distinct
            )
            if not strictly_contained:
                kept.append(row)
        return [item for _, item in kept]

    # "disallow": weighted interval scheduling over spans sorted by end.
    by_end = sorted(distinct, key=lambda row: (int(end(row[1])), int(start(row[1])), -float(score(row[1])), row[0]))
    ends = [int(end(item)) for _, item in by_end]
    predecessors = [bisect.bisect_right(ends, int(start(item)), 0, index) - 1
                    for index, (_, item) in enumerate(by_end)]
    best: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]

    def selection_key(selection: tuple[int, ...]):
        rows = [by_end[index] for index in selection]
        return tuple(rank_key(row) for row in sorted(rows, key=rank_key))

    for index, (_, item) in enumerate(by_end):
        previous_score, previous_selection = best[predecessors[index] + 1]
        with_item = (previous_score + float(score(item)), previous_selection + (index,))
        without_item = best[index]
        if with_item[0] > without_item[0]:
            best.append(with_item)
        elif with_item[0] < without_item[0]:
            best.append(without_item)
        elif len(with_item[1]) > len(without_item[1]):
            # Missing confidences count as zero in the merge: keep the larger compatible set.
            best.append(with_item)
        elif len(with_item[1]) < len(without_item[1]):
            best.append(without_item)
        else:
            best.append(with_item if selection_key(with_item[1]) < selection_key(without_item[1]) else without_item)

    selected = [by_end[index] for index in best[-1][1]]
    selected.sort(key=rank_key)
    return [item for _, item in selected]
