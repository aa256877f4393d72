"""A bundle's span model served with OpenVINO, ``tokenizers`` and numpy: the library's ``batch_extract``, lean.

:class:`BundleModel` offers what the serving runtime calls on a gliner2 model
(``batch_extract``, schema building, word counting, chunking and merging of long
texts, token counting), each a port of the library's own steps:

1. :mod:`.schema_dict`: the service's schema as the library's ``Schema.build()``
   dict and metadata;
2. :mod:`.preprocess`: prompts, word splitting, tokenization, collation;
3. the encoder IR (:class:`.openvino_compile.Encoder`);
4. :mod:`.heads`: counts, count-aware queries, span and classification logits;
5. :mod:`.decoding` and :mod:`.formatting`: spans, classes, structures, relations,
   formatted as the library formats them;
6. :mod:`.chunking`: texts longer than a window, split and merged as the
   library's ``batch_extract_long`` does.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import chunking
from .bundle import Bundle, BundleError
from .decoding import decode_sample
from .formatting import format_results
from .heads import SpanHeads
from .openvino_compile import Encoder
from .preprocess import Preprocessor
from .schema_dict import library_schema
from .weight_pages import release_weight_pages

logger = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage by the last ``batch_extract`` call (the worker thread's; for profiles)."""

    preprocess: float = 0.0
    encoder: float = 0.0
    heads: float = 0.0
    decode: float = 0.0

    def add(self, stage: str, seconds: float) -> None:
        setattr(self, stage, getattr(self, stage) + seconds)


@dataclass
class BundleModel:
    bundle: Bundle
    preprocessor: Preprocessor
    encoder: Encoder
    heads: SpanHeads
    enable_records: bool
    architecture: str = "span"
    last_token_counts: list[int] | None = None
    last_stage_times: StageTimes = field(default_factory=StageTimes)

    @classmethod
    def load(cls, bundle: Bundle, precision: str, *, cache_dir: Path | None = None) -> BundleModel:
        from tokenizers import Tokenizer

        if not bundle.serves(precision):
            raise BundleError(f"bundle {bundle.path} holds a {bundle.precision} encoder; it cannot run {precision} "
                              f"(convert again with --precision {precision})")
        settings = json.loads((bundle.path / "processor.json").read_text())
        preprocessor = Preprocessor(Tokenizer.from_file(str(bundle.path / "tokenizer.json")), settings)
        encoder = Encoder(bundle.path / "encoder.xml", precision, cache_dir=cache_dir)
        heads = SpanHeads(bundle.path, precision, cache_dir=cache_dir, core=encoder.core)
        model = cls(bundle=bundle, preprocessor=preprocessor, encoder=encoder, heads=heads,
                    enable_records=bool(settings.get("enable_records", False)))
        model.warm_up()
        released = release_weight_pages([bundle.path, cache_dir])
        logger.info("compiled and warmed up %s; %d MB of weight-file pages it no longer reads given back",
                    bundle.path, released // 2 ** 20)
        return model

    def warm_up(self) -> None:
        """One short request through the encoder and every head function.

        OpenVINO prepares (repacks) most weights on a model's first inference, reading the weight file
        once more; after this, :func:`.weight_pages.release_weight_pages` can give those pages back.
        """
        from ..core.schema import build_schema

        schema = build_schema(entities=[{"name": "person"}],
                              classifications=[{"name": "tone", "labels": ["formal", "casual"]}])
        self.batch_extract(["Ada Lovelace wrote it."], [self.library_schema(schema)])

    # --- what the serving runtime calls ---

    def library_schema(self, schema):
        """The service's :class:`~..core.schema.ExtractionSchema` as ``(schema_dict, metadata)``."""
        return library_schema(schema, enable_records=self.enable_records)

    def count_tokens(self, text: str) -> int:
        return self.preprocessor.count_tokens(text)

    def word_count(self, text: str) -> int:
        return sum(1 for _ in chunking.iter_word_offsets(text, word_splitter=self.preprocessor.splitter))

    def split(self, text: str, chunk_size: int, chunk_overlap: int) -> list:
        return chunking.split_text_into_chunks(text, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                               word_splitter=self.preprocessor.splitter)

    def merge(self, schema, text: str, chunks: Sequence, results: Sequence[dict], *, include_confidence: bool,
              include_spans: bool) -> dict:
        schema_dict, metadata = schema
        return chunking.merge_chunk_results(
            text, list(chunks), list(results), include_confidence=include_confidence, include_spans=include_spans,
            scalar_entity_labels=chunking.scalar_entity_labels(metadata), overlap_policy=None)

    def batch_extract(self, texts: list[str], schemas: list, batch_size: int = 8, threshold: float = 0.5,
                      format_results: bool = True, include_confidence: bool = False,
                      include_spans: bool = False, max_len: int | None = None) -> list[dict]:
        """gliner2 2.1.0 ``batch_extract`` for ``schemas`` of ``(schema_dict, metadata)``, one per text."""
        if not texts:
            return []
        if batch_size <= 0:
            raise ValueError("batch_size must be greater than 0")
        if len(schemas) != len(texts):
            raise ValueError(f"Schema count ({len(schemas)}) != text count ({len(texts)})")
        times = self.last_stage_times = StageTimes()
        counts: list[int] = []
        results: list[dict] = []
        for start in range(0, len(texts), batch_size):
            part = slice(start, start + batch_size)
            results.extend(self._extract_batch(texts[part], schemas[part], threshold, format_results,
                                               include_confidence, include_spans, max_len, times, counts))
        self.last_token_counts = counts
        return results

    def _extract_batch(self, texts, schemas, threshold, format_results_, include_confidence, include_spans,
                       max_len, times: StageTimes, counts: list[int]) -> list[dict]:
        clock = time.perf_counter()
        batch = self.preprocessor.collate(list(texts), [s[0] for s in schemas], max_len=max_len)
        now = time.perf_counter()
        times.add("preprocess", now - clock)
        clock = now
        hidden = self.encoder.run(batch.input_ids, batch.attention_mask)
        counts.extend(int(n) for n in batch.attention_mask.sum(axis=1))
        now = time.perf_counter()
        times.add("encoder", now - clock)
        clock = now
        token_embs, schema_embs = self.preprocessor.gather(batch, hidden)
        raw_logits, pred_counts = self.heads.span_logits(batch.samples, token_embs, schema_embs)
        cls_logits = self.heads.classification_logits(batch.samples, schema_embs)
        now = time.perf_counter()
        times.add("heads", now - clock)
        clock = now
        out = []
        for i, sample in enumerate(batch.samples):
            metadata = schemas[i][1]
            result = decode_sample(
                schema_tokens_list=sample.schema_tokens_list, task_types=sample.task_types,
                text_tokens=sample.text_tokens, original_text=sample.original_text,
                schema=sample.original_schema, start_mapping=sample.start_mapping,
                end_mapping=sample.end_mapping, threshold=threshold, metadata=metadata,
                include_confidence=include_confidence, include_spans=include_spans,
                raw_span_logits=raw_logits[i], pred_counts=pred_counts[i], cls_logits=cls_logits[i],
                embedded=[j < len(schema_embs[i]) and len(schema_embs[i][j]) > 0
                          for j in range(len(sample.task_types))])
            if format_results_:
                result = format_results(result, include_confidence, metadata.get("relation_order", []),
                                        metadata.get("classification_tasks", []))
            out.append(result)
        times.add("decode", time.perf_counter() - clock)
        return out
