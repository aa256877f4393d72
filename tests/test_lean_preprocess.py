"""The lean preprocessing (schema dicts, word splitting, prompt, tokenization, collation, gather) equals gliner2's.

Every field of ``lean.preprocess.LeanBatch`` is compared with the library's
``PreprocessedBatch`` from ``ExtractorCollator(processor, is_training=False,
max_len=..., architecture="span")``, on checkpoints with a character
(SentencePiece-style Unigram) vocabulary, a WordPiece vocabulary and, when
``tests/model_fixtures.py`` provides ``build_sentencepiece_checkpoint``, a real
SentencePiece one. The lean side is built only from what conversion writes (a
JSON settings file and a ``tokenizers`` JSON file).
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import SEED_TEXT
from test_parity import TEXTS
from tokenizers import Tokenizer

import model_fixtures
from gliner_server.conversion.processor_settings import export_tokenizer, processor_settings
from gliner_server.core.schema import build_schema, parse_field_spec, to_library_schema
from gliner_server.dialects import schema_json
from gliner_server.lean import words
from gliner_server.lean.preprocess import Preprocessor
from gliner_server.lean.schema_dict import library_schema
from gliner_server.random_checkpoint import build_deberta_checkpoint, subword_tokenizer

MORE_TEXTS = [
    "Zoë Saldaña flew from São Paulo to 東京 and Zürich 🚀 with Ångström 😀!",
    "?!...",
    "",
    "   ",
    "Tim Cook runs Apple",
    "Tim  Cook\n\nruns\t\tApple   in  Cupertino .",
    "The tokens [E] and [SEP_TEXT] and [P] appear literally here.",
    "zero\u200bwidth \u200b and İstanbul",
    "Mail tim@apple.com or visit https://apple.com/x?y=1 now, @tim_cook says state-of-the-art co_op.",
]
ALL_TEXTS = [*TEXTS, SEED_TEXT, *MORE_TEXTS]

SCHEMAS = {
    "entities": dict(entities=[{"name": "person"}, {"name": "company"}, {"name": "location"}]),
    "entities_described": dict(
        entities=[{"name": "person", "description": "A human being [E] named"},
                  {"name": "company", "description": "A business", "threshold": 0.3},
                  {"name": "date", "dtype": "str"}, {"name": "product line"}],
        entity_dtype="str", entity_threshold=0.6),
    "classification": dict(classifications=[{"name": "sentiment", "labels": ["positive", "neutral", "negative"]}]),
    "classification_multi": dict(classifications=[
        {"name": "topics", "labels": ["tech", "business", "sports"], "multi_label": True, "cls_threshold": 0.3,
         "label_descriptions": {"tech": "Technology", "business": "Money", "sports": "Games"}},
        {"name": "tone", "labels": ["formal", "casual"], "label_descriptions": {"casual": "Relaxed"}}]),
    "structure": dict(structures=[{"name": "product", "fields": [
        {"name": "name", "dtype": "str", "description": "The product name"},
        {"name": "price", "dtype": "str", "threshold": 0.4},
        {"name": "features"},
        {"name": "category", "choices": ["phone", "laptop", "tablet"], "dtype": "str"},
        {"name": "colors", "choices": ["red", "blue"], "description": "Colors it ships in"}]}]),
    "structure_json_api": dict(structures=[
        {"name": "meeting", "json_api": True, "fields": [
            parse_field_spec("who::list::The people"), parse_field_spec("where::str"),
            parse_field_spec("kind::[business|social]::What kind")]},
        {"name": "contact", "fields": [parse_field_spec("email::str")]}]),
    "relations": dict(relations=[{"name": "works_for"}, {"name": "located_in", "description": "Place of a thing"},
                                 {"name": "founded", "threshold": 0.2}], relation_threshold=0.4),
    "everything": dict(
        entities=[{"name": "person", "description": "A person"}, {"name": "company"}],
        classifications=[{"name": "sentiment", "labels": ["positive", "negative"],
                          "label_descriptions": {"positive": "Good", "negative": "Bad"}}],
        structures=[{"name": "deal", "json_api": True, "fields": [
            {"name": "buyer", "dtype": "str"}, {"name": "status", "choices": ["open", "closed"]}]},
            {"name": "event", "fields": [{"name": "when", "description": "The date"}]}],
        relations=[{"name": "ceo_of", "description": "Leads the company"}]),
    # As the gliner2 API dialect parses a "schema"/"extract_json" body.
    "dialect": dict(
        entities=schema_json.entity_specs({"company": "A business organisation",
                                           "person": {"description": "A human", "threshold": 0.3},
                                           "date": {"dtype": "str"}}),
        classifications=schema_json.classification_specs(
            {"sentiment": {"labels": {"positive": "Good", "negative": "Bad"}, "multi_label": True},
             "urgency": ["high", "low"]}),
        structures=schema_json.structure_specs(
            {"order": ["item::str::What was bought", "quantity", "size::[S|M|L]", "tags::list::[a|b]"]},
            json_api=True),
        relations=schema_json.relation_specs(["works_for", "born_in"])),
}


class _Model:
    """What ``to_library_schema`` reads of a model: ``create_schema`` and ``enable_records``."""

    def __init__(self, enable_records: bool):
        self.enable_records = enable_records

    @staticmethod
    def create_schema():
        from gliner2.inference.schema import Schema

        return Schema()


def _fixture_builders():
    builders = {
        "char": lambda d: build_deberta_checkpoint(d, seed=1),
        "wordpiece": lambda d: build_deberta_checkpoint(d, seed=3, tokenizer=subword_tokenizer()),
    }
    sentencepiece = getattr(model_fixtures, "build_sentencepiece_checkpoint", None)
    # SENTENCEPIECE: parametrized over only once tests/model_fixtures.py provides the builder.
    if sentencepiece is not None:
        builders["sentencepiece"] = lambda d: sentencepiece(d, 5) or d
    return builders


BUILDERS = _fixture_builders()


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def models(request, tmp_path_factory):
    """(library model, lean preprocessor built from the exported settings and tokenizer files)."""
    from gliner2 import AutoExtractor

    root = tmp_path_factory.mktemp(f"lean-pre-{request.param}")
    path = BUILDERS[request.param](root / "model")
    model = AutoExtractor.from_pretrained(str(path))
    settings = json.loads(json.dumps(processor_settings(model)))
    tokenizer = Tokenizer.from_file(str(export_tokenizer(model, root / "tokenizer.json")))
    return model, Preprocessor(tokenizer, settings)


def _library_dicts(schema, model, enable_records):
    library = to_library_schema(schema, _Model(enable_records))
    dicts, metadata = model._build_schema_dicts_and_metadata([library])
    return dicts[0], metadata[0]


def assert_same(got, want, path="$"):
    """Equal, with mappings also in the same key order (the library's prompts follow it)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: {got!r} != {want!r}"
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("enable_records", [False, True])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_dicts_equal_the_library(models, name, enable_records):
    model, _ = models
    schema = build_schema(**SCHEMAS[name])
    got_dict, got_meta = library_schema(schema, enable_records=enable_records)
    want_dict, want_meta = _library_dicts(schema, model, enable_records)
    assert_same(got_dict, want_dict)
    assert_same(got_meta, want_meta)
    assert isinstance(got_dict["entities"], OrderedDict)


def _reference(model, texts, schema_dicts, max_len):
    from gliner2.training.trainer import ExtractorCollator

    collator = ExtractorCollator(model.processor, is_training=False, max_len=max_len, architecture="span")
    return collator(list(zip(texts, schema_dicts)))


def assert_batch_equal(got, want):
    assert got.input_ids.dtype == np.int64 and got.attention_mask.dtype == np.int64
    np.testing.assert_array_equal(got.input_ids, want.input_ids.numpy())
    np.testing.assert_array_equal(got.attention_mask, want.attention_mask.numpy())
    assert len(got) == len(want)
    for i, sample in enumerate(got.samples):
        assert sample.text_tokens == want.text_tokens[i]
        assert sample.original_text == want.original_texts[i]
        assert_same(sample.original_schema, want.original_schemas[i])
        assert sample.start_mapping == want.start_mappings[i]
        assert sample.end_mapping == want.end_mappings[i]
        assert sample.schema_tokens_list == want.schema_tokens_list[i]
        assert sample.task_types == want.task_types[i]
        assert sample.length == want.original_lengths[i]
        assert sample.word_positions.dtype == np.int64
        assert sample.word_positions.tolist() == want.text_word_indices[i, :want.text_word_counts[i]].tolist()
        assert sample.schema_positions == want.schema_special_indices[i]


def assert_gather_equal(model, pre, got, want, seed=0):
    hidden = np.random.default_rng(seed).standard_normal((*got.input_ids.shape, 8)).astype(np.float32)
    want_tokens, want_schemas = model.processor.extract_embeddings_from_batch(
        torch.from_numpy(hidden), want.input_ids, want)
    got_tokens, got_schemas = pre.gather(got, hidden)
    assert len(got_tokens) == len(want_tokens) and len(got_schemas) == len(want_schemas)
    for g, w in zip(got_tokens, want_tokens):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-6)
    for g_tasks, w_tasks in zip(got_schemas, want_schemas):
        assert len(g_tasks) == len(w_tasks)
        for g, w in zip(g_tasks, w_tasks):
            w = torch.stack(w).numpy() if w else np.empty((0, hidden.shape[-1]), dtype=np.float32)
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("max_len", [None, 1, 4, 9])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_collate_and_gather_equal_the_library(models, name, max_len):
    model, pre = models
    schema_dict, _ = library_schema(build_schema(**SCHEMAS[name]), enable_records=False)
    want = _reference(model, ALL_TEXTS, [schema_dict] * len(ALL_TEXTS), max_len)
    got = pre.collate(ALL_TEXTS, [schema_dict] * len(ALL_TEXTS), max_len=max_len)
    assert_batch_equal(got, want)
    assert_gather_equal(model, pre, got, want)


@pytest.mark.parametrize("enable_records", [False, True])
def test_a_batch_mixing_schemas(models, enable_records):
    model, pre = models
    names = sorted(SCHEMAS)
    texts = [ALL_TEXTS[i % len(ALL_TEXTS)] for i in range(2 * len(names))]
    dicts = [library_schema(build_schema(**SCHEMAS[names[i % len(names)]]), enable_records=enable_records)[0]
             for i in range(len(texts))]
    for max_len in (None, 5):
        want = _reference(model, texts, dicts, max_len)
        got = pre.collate(texts, dicts, max_len=max_len)
        assert_batch_equal(got, want)
        assert_gather_equal(model, pre, got, want, seed=max_len or 0)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_mean_and_max_pooling_gather_like_the_library_loop(models, pooling):
    model, _ = models
    settings = {**processor_settings(model), "token_pooling": pooling}
    tokenizer = Tokenizer.from_str(model.processor.tokenizer.backend_tokenizer.to_str())
    pre = Preprocessor(tokenizer, settings)
    dicts = [library_schema(build_schema(**SCHEMAS[n]), enable_records=False)[0] for n in sorted(SCHEMAS)]
    texts = [ALL_TEXTS[i % len(ALL_TEXTS)] for i in range(len(dicts))]
    previous = model.processor.token_pooling
    model.processor.token_pooling = pooling
    try:
        want = _reference(model, texts, dicts, None)
        got = pre.collate(texts, dicts)
        assert_batch_equal(got, want)
        assert_gather_equal(model, pre, got, want)
    finally:
        model.processor.token_pooling = previous


def test_a_record_that_fails_to_transform_becomes_the_library_fallback(models):
    """A label named [SEP_STRUCT] routes the next marker past the last task: the library's fallback record."""
    model, pre = models
    schema_dict, _ = library_schema(build_schema(entities=[{"name": "[SEP_STRUCT]"}, {"name": "person"}]),
                                    enable_records=False)
    good, _ = library_schema(build_schema(**SCHEMAS["entities"]), enable_records=False)
    texts, dicts = [SEED_TEXT, TEXTS[1]], [schema_dict, good]
    want = _reference(model, texts, dicts, None)
    got = pre.collate(texts, dicts)
    assert_batch_equal(got, want)
    hidden = np.zeros((*got.input_ids.shape, 4), dtype=np.float32)
    with pytest.raises(IndexError):
        model.processor.extract_embeddings_from_batch(torch.from_numpy(hidden), want.input_ids, want)
    with pytest.raises(IndexError):
        pre.gather(got, hidden)


def test_special_tokens_and_words_tokenize_as_the_library(models):
    model, pre = models
    tokenizer = model.processor.tokenizer
    for word in [*model.processor.SPECIAL_TOKENS, "(", ")", ",", "|", "apple", "東京", "😀", "\u200b", "x[E]y",
                 "entities [DESCRIPTION] person: a [E] human", "İstanbul", "ångström"]:
        assert list(pre._encode_word(word)) == tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)), word
    for text in ALL_TEXTS:
        assert pre.count_tokens(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_char_word_splitter_model(tmp_path):
    """A model switched to the "char" splitter exports it and collates CJK per character, as the library."""
    from gliner2 import AutoExtractor

    model = AutoExtractor.from_pretrained(str(build_deberta_checkpoint(tmp_path / "model", seed=1)))
    model.set_word_splitter("char")
    settings = processor_settings(model)
    assert settings["word_splitter"] == {"kind": "char"}
    pre = Preprocessor(Tokenizer.from_file(str(export_tokenizer(model, tmp_path / "tok.json"))), settings)
    dicts = [library_schema(build_schema(**SCHEMAS["everything"]), enable_records=False)[0]] * len(ALL_TEXTS)
    want = _reference(model, ALL_TEXTS, dicts, 6)
    got = pre.collate(ALL_TEXTS, dicts, max_len=6)
    assert_batch_equal(got, want)
    assert_gather_equal(model, pre, got, want)


@pytest.mark.parametrize("kind", ["whitespace", "char"])
def test_word_splitters_equal_the_library(kind):
    from gliner2.inference.chunking import iter_word_offsets
    from gliner2.processing.word_splitter import resolve_word_splitter

    ours, theirs = words.word_splitter({"kind": kind}), resolve_word_splitter(kind)
    for text in [*ALL_TEXTS, "İİ straße ΣΑΣ ﬁ", "a-b_c--d __x e\u0301t\u00e9 \u200cزن"]:
        for lower in (True, False):
            assert list(ours(text, lower=lower)) == list(theirs(text, lower=lower))
        assert list(words.iter_word_offsets(text, ours)) == list(iter_word_offsets(text, kind))


def test_word_splitter_settings():
    assert isinstance(words.word_splitter(None), words.WhitespaceTokenSplitter)
    assert isinstance(words.word_splitter({}), words.WhitespaceTokenSplitter)
    with pytest.raises(ValueError, match="Unknown word_splitter 'regex'"):
        words.word_splitter({"kind": "regex"})
    with pytest.raises(ValueError, match="token_pooling"):
        Preprocessor(Tokenizer.from_str(subword_tokenizer().backend_tokenizer.to_str()),
                     {"token_pooling": "attention"})


def test_lean_modules_import_no_ml_library():
    code = ("import sys; import gliner_server.lean.preprocess, gliner_server.lean.schema_dict, "
            "gliner_server.lean.words; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'gliner2', 'safetensors'}); print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_combining_marks_equal_a_scan_of_every_code_point():
    """The word pattern's combining marks come from a scan of the planes that can hold them; a scan of every
    code point (what gliner2's splitter does) finds exactly the same characters."""
    every = words.combining_marks([range(sys.maxunicode + 1)])
    assert words.combining_marks() == every and len(every) > 2000
