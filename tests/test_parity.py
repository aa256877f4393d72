"""The OpenVINO f32 service path equals the gliner2 PyTorch reference.

Each case sends a /gliner-2 body through the dialect and the core engine on
the OpenVINO model, and compares with the library's own convenience method on
the same checkpoint with its PyTorch encoder.
"""
from __future__ import annotations

import pytest

from conftest import SEED_TEXT, loaded
from helpers import assert_match

from gliner_server.core.engine import InferenceEngine
from gliner_server.dialects import gliner2_api
from gliner_server.runtime.openvino_encoder import OpenVINOEncoder

TEXTS = [
    SEED_TEXT,
    "This laptop has great performance but poor battery life.",
    "iPhone 15 Pro Max with 256GB storage priced at $1199.",
    "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday.",
]


@pytest.fixture(scope="module", params=["span-bundle", "span-library", "boundary-library", "sentencepiece-bundle",
                                        "wordpiece-bundle"])
def pair(request, checkpoints, cache_dir):
    """The served model and the library's PyTorch reference: span checkpoints both as the server runs them
    (converted into a bundle, the lean runtime) and through the library path; boundary checkpoints have no
    lean runtime, so the server serves them through the library path. The span checkpoints' tokenizers: a
    vocabulary list (span), a trained SentencePiece model (DeBERTa-v3's kind) and MiniLM's WordPiece."""
    architecture, runtime = request.param.split("-")
    if architecture in ("sentencepiece", "wordpiece"):
        path = request.getfixturevalue(f"{architecture}_checkpoint")
    else:
        path = checkpoints[architecture]
    served = loaded(path, "f32", cache_dir, runtime="auto" if runtime == "bundle" else "library")
    reference = loaded(path, "torch", cache_dir)
    assert served.runtime == ("lean" if runtime == "bundle" else "library")
    if runtime == "library":
        assert isinstance(served.model.encoder, OpenVINOEncoder)
    if architecture == "boundary":   # what the server does with it too
        assert loaded(path, "f32", cache_dir).runtime == "library"
    assert not isinstance(reference.model.encoder, OpenVINOEncoder)
    engine = InferenceEngine.of(served)
    return engine, reference.model


def serve(engine, body):
    call = gliner2_api.parse(body)
    return call.answer(engine.run(call.request))


FLAGS = [dict(), dict(include_confidence=True), dict(include_spans=True),
         dict(include_confidence=True, include_spans=True)]


@pytest.mark.parametrize("flags", FLAGS)
def test_entities(pair, flags):
    engine, ref = pair
    labels = ["company", "person", "product", "location"]
    for text in TEXTS:
        got = serve(engine, {"task": "extract_entities", "text": text, "schema": labels, **flags})
        assert_match(got, ref.extract_entities(text, labels, **flags))


def test_entities_with_descriptions_and_thresholds(pair):
    engine, ref = pair
    entities = {"company": "A business organisation", "person": {"description": "A human", "threshold": 0.3},
                "date": {"dtype": "str"}}
    for threshold in (0.3, 0.5, 0.7):
        got = serve(engine, {"task": "schema", "text": TEXTS[3], "threshold": threshold,
                             "schema": {"entities": entities}, "include_confidence": True})
        want = ref.extract(TEXTS[3], ref.create_schema().entities(entities), threshold=threshold,
                           include_confidence=True)
        assert_match(got, want)


def test_seed_entity_body(pair):
    engine, ref = pair
    labels = ["company", "person", "product", "location"]
    got = serve(engine, {"text": SEED_TEXT, "labels": labels})
    assert set(got) == {"entities"} and set(got["entities"]) == set(labels)
    assert_match(got, ref.extract_entities(SEED_TEXT, labels))


@pytest.mark.parametrize("flags", [dict(), dict(include_confidence=True)])
def test_classification_single_label(pair, flags):
    engine, ref = pair
    tasks = {"sentiment": ["positive", "neutral", "negative"]}
    for text in TEXTS:
        got = serve(engine, {"text": text, "labels": tasks, **flags})
        assert_match(got, ref.classify_text(text, tasks, **flags))
        if not flags:
            assert got["sentiment"] in tasks["sentiment"]


def test_classification_multi_label(pair):
    engine, ref = pair
    tasks = {"topics": {"labels": ["tech", "finance", "sports", "travel"], "multi_label": True,
                        "cls_threshold": 0.4},
             "tone": ["formal", "casual"]}
    for text in TEXTS:
        got = serve(engine, {"task": "schema", "text": text, "schema": {"classifications": tasks},
                             "include_confidence": True})
        assert_match(got, ref.classify_text(text, tasks, include_confidence=True))


@pytest.mark.parametrize("flags", FLAGS)
def test_extract_json(pair, flags):
    engine, ref = pair
    fields = ["name::str::Product name", "storage::str::Storage capacity",
              "price::str::Price with currency", "features::list"]
    if ref.architecture == "span":  # see test_boundary_choice_fields_fail_like_the_library
        fields.append("category::[phone|laptop|tablet]::Kind of device")
    structures = {"product": fields}
    for text in TEXTS[1:3]:
        got = serve(engine, {"task": "extract_json", "text": text, "schema": structures,
                             "threshold": 0.45, **flags})
        assert_match(got, ref.extract_json(text, structures, threshold=0.45, **flags))


@pytest.mark.parametrize("flags", FLAGS)
def test_relations(pair, flags):
    engine, ref = pair
    relations = {"works_for": "person works for organisation", "located_in": ""}
    got = serve(engine, {"task": "schema", "text": TEXTS[3], "schema": {"relations": relations}, **flags})
    assert_match(got, ref.extract_relations(TEXTS[3], relations, **flags))


def test_combined_schema(pair):
    engine, ref = pair
    body_schema = {
        "entities": ["person", "company"], "entity_threshold": 0.55,
        "classifications": {"sentiment": {"labels": ["positive", "negative"], "multi_label": False,
                                          "cls_threshold": 0.5}},
        "structures": {"meeting": ["who::list::People", "where::str"]},
        "relations": ["works_for"],
    }
    local = (ref.create_schema().entities(["person", "company"], threshold=0.55)
             .classification("sentiment", ["positive", "negative"]).relations(["works_for"]))
    local.structure("meeting").field("who", dtype="list", description="People").field("where", dtype="str")
    got = serve(engine, {"task": "schema", "text": TEXTS[3], "schema": body_schema,
                         "include_confidence": True, "include_spans": True})
    assert_match(got, ref.extract(TEXTS[3], local, include_confidence=True, include_spans=True))


def test_batches(pair):
    engine, ref = pair
    labels = ["company", "person"]
    got = serve(engine, {"task": "extract_entities", "text": TEXTS, "schema": labels,
                         "include_confidence": True})
    assert list(got) == ["result"] and len(got["result"]) == len(TEXTS)
    assert_match(got["result"], ref.batch_extract_entities(TEXTS, labels, include_confidence=True))
    structures = {"product": ["name::str", "price::str"]}
    got = serve(engine, {"task": "extract_json", "text": TEXTS, "schema": structures})
    assert_match(got["result"], ref.batch_extract_json(TEXTS, structures))


def test_raw_results(pair):
    engine, ref = pair
    got = serve(engine, {"task": "extract_entities", "text": SEED_TEXT, "schema": ["person"],
                         "format_results": False})
    assert_match(got, ref.extract_entities(SEED_TEXT, ["person"], format_results=False))


def test_typed_results_agree_with_formatted(pair):
    """The typed form (native Extract) carries exactly the formatted mentions."""
    engine, ref = pair
    call = gliner2_api.parse({"task": "schema", "text": TEXTS[3], "include_confidence": True,
                              "include_spans": True,
                              "schema": {"entities": ["person", "company"], "relations": ["works_for"],
                                         "classifications": {"tone": ["formal", "casual"]}}})
    outcome = engine.run(call.request)
    formatted, typed = outcome.results[0], outcome.typed(call.request.schema)[0]
    flat = [(label, m["text"], m["start"], m["end"]) for label, ms in formatted["entities"].items() for m in ms]
    assert [(m.label, m.text, m.start, m.end) for m in typed.entities] == flat
    assert [(c.task, [l.label for l in c.labels]) for c in typed.classifications] == [
        ("tone", [formatted["tone"]["label"]])]
    pairs = formatted["relation_extraction"]["works_for"]
    assert [(r.head.text, r.tail.text) for r in typed.relations] == [(p["head"]["text"], p["tail"]["text"]) for p in pairs]
    assert all(0.0 <= m.score <= 1.0 for m in typed.entities)


def test_boundary_choice_fields_fail_like_the_library(checkpoints, cache_dir):
    """gliner2 2.1.0's boundary record decoder cannot place choice fields (it raises
    'token boundaries [-1, ...) out of range'); the service reports that as a
    SERVER_ERROR instead of crashing, like any failure inside the library."""
    from gliner_server.errors import ErrorKind, ServiceError

    served = loaded(checkpoints["boundary"], "f32", cache_dir)
    reference = loaded(checkpoints["boundary"], "torch", cache_dir).model
    structures = {"product": ["name::str", "category::[phone|laptop|tablet]"]}
    with pytest.raises(ValueError, match="out of range"):
        reference.extract_json(TEXTS[1], structures, threshold=0.45)
    engine = InferenceEngine.of(served)
    with pytest.raises(ServiceError) as caught:
        serve(engine, {"task": "extract_json", "text": TEXTS[1], "schema": structures, "threshold": 0.45})
    assert caught.value.kind is ErrorKind.SERVER_ERROR
