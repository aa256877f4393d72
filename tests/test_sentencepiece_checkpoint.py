"""The SentencePiece test checkpoint is what its name says, and the bundle tokenizes exactly as the library.

The published GLiNER2 checkpoints use DeBERTa-v3's (or mDeBERTa-v3's) SentencePiece
tokenizer; this checkpoint's tokenizer is a unigram model trained here with the
``sentencepiece`` package (tests/model_fixtures.py). Answers through its bundle are
compared with the library in tests/test_parity.py (``sentencepiece-bundle``).
"""
from __future__ import annotations

import sentencepiece

from conftest import SEED_TEXT, loaded

WORDS = ["Cupertino", "announced", "Müller", "Zürich", "東京", "iPhone", "$1199.", "naïve", "🙂", "works",
         "Satya", "Nadella", "[E]", "co-founder", "e-mail:", "x" * 40]


def test_the_tokenizer_is_the_trained_sentencepiece_model(sentencepiece_checkpoint, cache_dir):
    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(sentencepiece_checkpoint.with_name(sentencepiece_checkpoint.name + ".spm.model")))
    reference = loaded(sentencepiece_checkpoint, "torch", cache_dir).model
    tokenizer = reference.processor.tokenizer
    pieces = {}
    for word in WORDS[:-4]:
        pieces[word] = tokenizer.tokenize(word)
        assert pieces[word] == processor.encode(word, out_type=str), word
    assert all(p[0].startswith("▁") for p in pieces.values())
    multi = [piece for p in pieces.values() for piece in p if len(piece.lstrip("▁")) > 1]
    assert len(multi) >= 8, pieces        # real subwords, not characters


def test_the_bundle_tokenizes_and_collates_as_the_library(sentencepiece_checkpoint, cache_dir):
    from gliner_server.core.schema import build_schema, to_library_schema
    from gliner2.training.trainer import ExtractorCollator

    served = loaded(sentencepiece_checkpoint, "f32", cache_dir)
    assert served.runtime == "lean"
    reference = loaded(sentencepiece_checkpoint, "torch", cache_dir).model
    for word in WORDS:
        assert served.count_tokens(word) == len(reference.processor.tokenizer(word, add_special_tokens=False)
                                                ["input_ids"]), word
    schema = build_schema(entities=[{"name": "person"}, {"name": "city", "description": "a town"}],
                          classifications=[{"name": "tone", "labels": ["formal", "casual"]}])
    texts = [SEED_TEXT, " ".join(WORDS)]
    library = ExtractorCollator(reference.processor, is_training=False, architecture="span")(
        [(text, to_library_schema(schema, reference).build()) for text in texts])
    lean = served.model.preprocessor.collate(texts, [served.model.library_schema(schema)[0]] * len(texts))
    assert lean.input_ids.tolist() == library.input_ids.tolist()
    assert lean.attention_mask.tolist() == library.attention_mask.tolist()
