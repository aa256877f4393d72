"""Texts longer than the model's window: the gliner2 library's overlapping chunks, merged with global offsets.

The library's ``batch_extract_long`` splits a text into word windows
(``split_text_into_chunks`` with the model's own word splitter), runs every
chunk with scores and offsets, and merges the chunks' results
(``merge_chunk_results``: offsets remapped to the whole text, duplicates from
the overlaps removed, scalar entity types collapsed, confidences and spans
stripped as asked). This module runs those same library functions, but lets the
service's batcher run the chunks, so they share passes with other requests.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..core.limits import Window


class ChunkPlan(tuple):
    """Each text's chunks (a text within the window is its one chunk), and the window they were cut for.

    ``words`` is also what the library's ``batch_extract_long`` passes to
    ``batch_extract`` as ``max_len``: the collator appends a full stop to a chunk
    that does not end a sentence and then cuts the chunk back to ``words`` word
    tokens, so a full chunk loses that stop. Running the chunks the same way
    keeps their scores identical to the library's.
    """

    words: int

    def __new__(cls, chunks, words: int):
        plan = super().__new__(cls, chunks)
        plan.words = words
        return plan


def word_count(model, text: str) -> int:
    """Words of ``text`` as the model's processor splits them (what the window counts)."""
    if hasattr(model, "word_count"):       # the lean runtime's port of the same functions
        return model.word_count(text)
    from gliner2.inference.chunking import iter_word_offsets
    from gliner2.processing.word_splitter import word_splitter_from

    return sum(1 for _ in iter_word_offsets(text, word_splitter=word_splitter_from(model)))


def split(model, text: str, window: Window) -> list:
    """The library's chunks of ``text`` (``TextChunk``: text, start/end characters and words)."""
    if hasattr(model, "split"):
        return model.split(text, window.words, window.overlap)
    from gliner2.inference.chunking import split_text_into_chunks
    from gliner2.processing.word_splitter import word_splitter_from

    return split_text_into_chunks(text, chunk_size=window.words, chunk_overlap=window.overlap,
                                  word_splitter=word_splitter_from(model))


def merge(model, schema, text: str, chunks: Sequence, results: Sequence[dict], *,
          include_confidence: bool, include_spans: bool) -> dict:
    """One result for ``text`` from its chunks' results (run with confidence and spans), as the library merges."""
    if hasattr(model, "merge"):
        return model.merge(schema, text, chunks, results, include_confidence=include_confidence,
                           include_spans=include_spans)
    from gliner2.inference.chunking import merge_chunk_results

    return merge_chunk_results(
        text, list(chunks), list(results), include_confidence=include_confidence, include_spans=include_spans,
        scalar_entity_labels=model._scalar_entity_labels(schema),
        overlap_policy=model._resolved_overlap_policy(None),
    )


def merge_all(model, schema, texts: Sequence[str], plan: Sequence[Sequence], results: Sequence[dict], *,
              include_confidence: bool, include_spans: bool) -> list[dict]:
    """Per text, the merge of its chunks' results; ``results`` holds every chunk's, in ``plan`` order.

    As in the library's ``batch_extract_long``, every text of such a request goes
    this way, a text within the window as its one chunk.
    """
    out, at = [], 0
    for text, chunks in zip(texts, plan):
        out.append(merge(model, schema, text, chunks, results[at:at + len(chunks)],
                         include_confidence=include_confidence, include_spans=include_spans))
        at += len(chunks)
    return out
