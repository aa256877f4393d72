"""The gliner2 library's own GLiNER2API client, unchanged, pointed at Envoy.

Every method must work and return what the library returns locally on the
same checkpoint (PyTorch encoder, in this process).
"""
from __future__ import annotations

import warnings

import pytest
from gliner2 import GLiNER2API
from gliner2.api_client import AuthenticationError, ValidationError

from conftest import API_KEY, SEED_TEXT
from test_rest_api import same_json

TEXTS = [
    SEED_TEXT,
    "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday.",
    "iPhone 15 Pro Max with 256GB storage priced at $1199.",
]
LABELS = ["company", "person", "product", "location"]
FLAGS = [dict(), dict(include_confidence=True), dict(include_spans=True),
         dict(include_confidence=True, include_spans=True)]


@pytest.fixture(scope="module")
def api(stack):
    return GLiNER2API(api_key=API_KEY, api_base_url=stack.base_url, max_retries=0)


@pytest.mark.parametrize("flags", FLAGS)
def test_extract_entities(api, reference, flags):
    for text in TEXTS:
        same_json(api.extract_entities(text, LABELS, **flags), reference.extract_entities(text, LABELS, **flags))


@pytest.mark.parametrize("flags", FLAGS[:2])
def test_batch_extract_entities(api, reference, flags):
    got = api.batch_extract_entities(TEXTS, LABELS, batch_size=2, **flags)
    same_json(got, reference.batch_extract_entities(TEXTS, LABELS, **flags))


def test_extract_entities_threshold(api, reference):
    for threshold in (0.2, 0.8):
        same_json(api.extract_entities(TEXTS[1], LABELS, threshold=threshold),
                  reference.extract_entities(TEXTS[1], LABELS, threshold=threshold))


def test_classify_text_single_task(api, reference):
    """The client sends only the labels ({"categories": [...]}), so the server names
    the task "classification"; the client maps the answer back to its task name."""
    labels = ["positive", "neutral", "negative"]
    for flags in FLAGS[:2]:
        got = api.classify_text(TEXTS[0], {"sentiment": labels}, **flags)
        want = reference.classify_text(TEXTS[0], {"classification": labels}, **flags)
        same_json(got, {"sentiment": want["classification"]})


def test_classify_text_several_tasks(api, reference):
    tasks = {"sentiment": ["positive", "negative"],
             "topics": {"labels": ["tech", "finance", "travel"], "multi_label": True, "cls_threshold": 0.3}}
    same_json(api.classify_text(TEXTS[1], tasks, include_confidence=True),
              reference.classify_text(TEXTS[1], tasks, include_confidence=True))


def test_batch_classify_text(api, reference):
    tasks = {"sentiment": ["positive", "negative"], "tone": ["formal", "casual"]}
    same_json(api.batch_classify_text(TEXTS, tasks), reference.batch_classify_text(TEXTS, tasks))


STRUCTURES = {"product": ["name::str::Product name", "storage::str::Storage capacity",
                          "price::str::Price with currency", "features::list",
                          "kind::[phone|laptop]::Device type"]}


@pytest.mark.parametrize("flags", FLAGS)
def test_extract_json(api, reference, flags):
    same_json(api.extract_json(TEXTS[2], STRUCTURES, **flags), reference.extract_json(TEXTS[2], STRUCTURES, **flags))


def test_batch_extract_json(api, reference):
    same_json(api.batch_extract_json(TEXTS, STRUCTURES), reference.batch_extract_json(TEXTS, STRUCTURES))


@pytest.mark.parametrize("flags", FLAGS)
def test_extract_relations(api, reference, flags):
    relations = ["works_for", "located_in"]
    same_json(api.extract_relations(TEXTS[1], relations, **flags),
              reference.extract_relations(TEXTS[1], relations, **flags))


def test_batch_extract_relations(api, reference):
    relations = {"works_for": "person employed by organisation"}
    same_json(api.batch_extract_relations(TEXTS, relations), reference.batch_extract_relations(TEXTS, relations))


def recipe(schema):
    """The same builder calls work on the client's SchemaAPI and the library's Schema."""
    schema = (schema.entities({"person": "A human being", "company": "A business"}, threshold=0.4)
              .classification("sentiment", ["positive", "negative"])
              .classification("topics", ["tech", "travel", "finance"], multi_label=True, cls_threshold=0.35)
              .relations(["works_for"]))
    return (schema.structure("meeting").field("who", dtype="list", description="Participants")
            .field("where", dtype="str", threshold=0.3).field("mood", choices=["tense", "friendly"]))


@pytest.mark.parametrize("flags", FLAGS[::3])
def test_extract_with_schema(api, reference, flags):
    same_json(api.extract(TEXTS[1], recipe(api.create_schema()), **flags),
              reference.extract(TEXTS[1], recipe(reference.create_schema()), **flags))


def test_batch_extract(api, reference):
    same_json(api.batch_extract(TEXTS, recipe(api.create_schema())),
              reference.batch_extract(TEXTS, recipe(reference.create_schema())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the client warns that per-text schemas are slower
        got = api.batch_extract(TEXTS[:2], [recipe(api.create_schema()), {"entities": ["person"]}])
    same_json(got, reference.batch_extract(TEXTS[:2], [recipe(reference.create_schema()),
                                                      reference.create_schema().entities(["person"])]))


class LocallyBackedClient(GLiNER2API):
    """GLiNER2API whose HTTP calls are replaced by the local library.

    The client's *_long methods chunk on the client and send the chunks as batch
    calls; the library's local *_long additionally truncates every chunk to
    ``max_len=chunk_size`` tokens, so the two legitimately differ. What the service
    must match is the client's pipeline run over local results.
    """

    def __init__(self, model):  # no HTTP session: nothing leaves the process
        self.model = model

    def batch_extract_entities(self, texts, entity_types, batch_size=8, **kwargs):
        return self.model.batch_extract_entities(texts, entity_types, batch_size=batch_size, **kwargs)

    def batch_extract_json(self, texts, structures, batch_size=8, **kwargs):
        return self.model.batch_extract_json(texts, structures, batch_size=batch_size, **kwargs)


def test_long_document_methods(api, reference):
    long_text = " ".join(TEXTS * 30)
    local = LocallyBackedClient(reference)
    kwargs = dict(chunk_size=96, chunk_overlap=16, include_confidence=True, include_spans=True)
    got = api.extract_entities_long(long_text, LABELS, **kwargs)
    assert sum(len(v) for v in got["entities"].values()) > 50
    same_json(got, local.extract_entities_long(long_text, LABELS, **kwargs))
    same_json(api.extract_json_long(long_text, STRUCTURES, chunk_size=96, chunk_overlap=16),
              local.extract_json_long(long_text, STRUCTURES, chunk_size=96, chunk_overlap=16))


def test_errors_raise_the_clients_exceptions(stack):
    with pytest.raises(AuthenticationError) as caught:
        GLiNER2API(api_key="wrong", api_base_url=stack.base_url, max_retries=0).extract_entities("x", ["a"])
    assert caught.value.status_code == 401 and "Invalid API key" in str(caught.value)
    api = GLiNER2API(api_key=API_KEY, api_base_url=stack.base_url, max_retries=0)
    with pytest.raises(ValidationError) as caught:
        api.extract_entities("", ["a"])
    assert caught.value.status_code == 400 and "must not be empty" in str(caught.value)
