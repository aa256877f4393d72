"""The synthetic training/eval data of the demo checkpoint (gliner_server.training.synthetic).

Every record is checked with the gliner2 library itself (``InputExample.validate``) and
with its word splitter (the trainer finds gold spans as runs of whole words); the two
splits are checked to share no sentence pattern or wording, to cover the same label
inventory, and never to contain the README examples the trained model is judged on.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gliner_server.training import synthetic
from gliner_server.training.synthetic import (
    CLASSIFICATION_TASKS,
    ENTITY_LABELS,
    EVAL_TEMPLATES,
    RELATIONS,
    STRUCTURES,
    TRAIN_TEMPLATES,
    build_records,
    build_tagged_records,
)

N_TRAIN, N_EVAL = 3000, 1500

# The README examples the trained model is judged on, and their distinctive names/wording.
README_SENTENCES = (
    "Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday.",
    "This laptop has great performance but poor battery life.",
    "iPhone 15 Pro Max with 256GB storage priced at $1199.",
    "Tim Cook leads Apple.",
    "Satya Nadella leads Microsoft.",
)
README_PHRASES = (
    "apple", "iphone", "cupertino", "microsoft", "satya", "nadella", "tim cook",
    "satya nadella", "great performance", "poor battery life", "battery life",
    "storage priced at",
)


@pytest.fixture(scope="module")
def train():
    return build_records(N_TRAIN, seed=0, split="train")


@pytest.fixture(scope="module")
def evaluation():
    return build_records(N_EVAL, seed=0, split="eval")


@pytest.fixture(scope="module")
def both(train, evaluation):
    return {"train": train, "eval": evaluation}


def _annotated_strings(record: dict) -> list[str]:
    out = record["output"]
    strings = [m for mentions in out.get("entities", {}).values() for m in mentions]
    for item in out.get("json_structures", []) + out.get("relations", []):
        for fields in item.values():
            strings.extend(fields.values())
    return strings


def _fixed_words(template) -> list[list[str]]:
    """The runs of fixed (non-slot) words of a template."""
    return [re.findall(r"[\w'-]+", part.lower()) for part in re.split(r"\{[^}]+\}", template.text)]


def _ngrams(runs: list[list[str]], n: int) -> set[tuple[str, ...]]:
    return {tuple(run[i:i + n]) for run in runs for i in range(len(run) - n + 1)}


# --- counts, determinism -----------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("count", [0, 1, 7, 250])
def test_exact_counts(count, split):
    assert len(build_records(count, seed=3, split=split)) == count


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_records(5, split="test")
    with pytest.raises(ValueError):
        build_records(-1)


def test_same_seed_same_records_and_prefix_stable(train):
    assert build_records(N_TRAIN, seed=0, split="train") == train
    assert build_records(200, seed=0, split="train") == train[:200]


def test_different_seed_or_split_differs(train, evaluation):
    other = build_records(200, seed=1, split="train")
    assert other != train[:200]
    assert len({r["input"] for r in other} & {r["input"] for r in train[:200]}) < 10
    assert build_records(200, seed=0, split="eval") != train[:200]
    assert build_records(200, seed=1, split="eval") != evaluation[:200]


def test_deterministic_across_processes(train):
    """Same bytes in a fresh interpreter with another hash seed (no global state)."""
    code = (
        "import hashlib, json, sys\n"
        "from gliner_server.training.synthetic import build_records\n"
        "records = build_records(300, seed=0, split='train')\n"
        "sys.stdout.write(hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join([str(Path(synthetic.__file__).parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True, timeout=60)
    expected = hashlib.sha256(json.dumps(train[:300], sort_keys=True).encode()).hexdigest()
    assert result.stdout == expected


def test_records_share_no_containers(train):
    """gliner2's processor edits a record's schema in place: no list/dict may be shared."""
    seen: dict[int, int] = {}

    def walk(obj, owner):
        if isinstance(obj, (list, dict)):
            assert seen.setdefault(id(obj), owner) == owner
            for child in obj.values() if isinstance(obj, dict) else obj:
                walk(child, owner)

    for i, record in enumerate(train[:500]):
        walk(record, i)


def test_no_duplicate_inputs(both):
    for records in both.values():
        inputs = [r["input"] for r in records]
        assert len(set(inputs)) == len(inputs)


# --- validity with the library -------------------------------------------------------------


def test_every_record_validates_with_gliner2(both):
    from gliner2.training.data import InputExample

    for split, records in both.items():
        for record in records:
            assert set(record) == {"input", "output"}
            errors = InputExample.from_dict(record).validate()
            assert errors == [], (split, record, errors)


def test_annotations_are_whole_word_runs_found_once(both):
    """Each annotated string is found exactly once by the trainer's word-level matching."""
    from gliner2.processing.word_splitter import WhitespaceTokenSplitter

    split_words = WhitespaceTokenSplitter()

    def words(text):
        return [token for token, _, _ in split_words(text, lower=True)]

    for records in both.values():
        for record in records:
            text_words = words(record["input"])
            # the module's own copy of the splitter agrees with the library's
            assert synthetic._words(record["input"]) == text_words
            for value in _annotated_strings(record):
                sub = words(value)
                hits = [i for i in range(len(text_words) - len(sub) + 1)
                        if text_words[i:i + len(sub)] == sub]
                assert len(hits) == 1, (record, value)


def test_record_shapes(both):
    for records in both.values():
        for record in records:
            out = record["output"]
            assert out and set(out) <= {"entities", "classifications", "json_structures", "relations"}
            assert 1 <= len(out) <= 3
            for label, mentions in out.get("entities", {}).items():
                assert label in ENTITY_LABELS and isinstance(mentions, list)
                assert all(isinstance(m, str) and m for m in mentions)
            for cls in out.get("classifications", []):
                assert cls["labels"] and set(cls["labels"]) <= set(CLASSIFICATION_TASKS[cls["task"]])
                assert isinstance(cls["true_label"], str) and cls["true_label"] in cls["labels"]
                assert len(set(cls["labels"])) == len(cls["labels"])
            for item in out.get("json_structures", []):
                for name, fields in item.items():
                    assert tuple(fields) == STRUCTURES[name]
                    assert all(isinstance(v, str) and v for v in fields.values())
            for item in out.get("relations", []):
                for name, fields in item.items():
                    assert name in RELATIONS and set(fields) == {"head", "tail"}


def test_short_sentences(train):
    lengths = [len(r["input"].split()) for r in train]
    assert max(lengths) <= 40
    assert sum(8 <= n <= 30 for n in lengths) / len(lengths) > 0.9


def test_task_mix(both):
    for records in both.values():
        per_record = Counter(len(r["output"]) for r in records)
        assert per_record[1] > 0.4 * len(records) and per_record[2] > 0.1 * len(records)
        kinds = Counter(k for r in records for k in r["output"])
        for kind in ("entities", "classifications", "json_structures", "relations"):
            assert kinds[kind] > 0.1 * len(records), (kind, kinds)


# --- label inventory ---------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_label_appears_in_each_split(both, split):
    records = both[split]
    entity_hits = Counter(label for r in records
                          for label, mentions in r["output"].get("entities", {}).items() if mentions)
    assert set(entity_hits) == set(ENTITY_LABELS)
    for task, labels in CLASSIFICATION_TASKS.items():
        true = Counter(c["true_label"] for r in records
                       for c in r["output"].get("classifications", []) if c["task"] == task)
        assert set(true) == set(labels), (task, true)
    structures = {name for r in records for item in r["output"].get("json_structures", []) for name in item}
    assert structures == set(STRUCTURES)
    relations = {name for r in records for item in r["output"].get("relations", []) for name in item}
    assert relations == set(RELATIONS)


def test_negatives_exist(both):
    for records in both.values():
        negative_labels = Counter(label for r in records
                                  for label, mentions in r["output"].get("entities", {}).items()
                                  if mentions == [])
        assert set(negative_labels) == set(ENTITY_LABELS)
        # some records have no entity at all, only labels asked for with []
        all_empty = [r for r in records
                     if "entities" in r["output"] and not any(r["output"]["entities"].values())]
        assert len(all_empty) >= 0.01 * len(records)
        # and negatives are not all-or-nothing: a record mixes found and absent labels
        mixed = [r for r in records
                 if any(r["output"].get("entities", {}).values())
                 and [] in r["output"].get("entities", {}).values()]
        assert len(mixed) >= 0.2 * len(records)


def test_classification_labels_are_shuffled_and_varied(both):
    for records in both.values():
        orders = Counter(tuple(c["labels"]) for r in records
                         for c in r["output"].get("classifications", []) if c["task"] == "sentiment")
        assert len(orders) >= 6  # all 3! orders of the full list, plus two-label lists
        first = Counter(c["labels"][0] for r in records for c in r["output"].get("classifications", [])
                        if c["task"] == "sentiment")
        assert len(first) == 3


def test_mixed_reviews_follow_the_verdict_clause():
    """"A but B" reviews are labelled by the clause after "but" (the verdict)."""
    templates = {t.id: t for t in TRAIN_TEMPLATES + EVAL_TEMPLATES}
    for template in templates.values():
        if template.kind != "sentiment":
            continue
        if "{pos_adj}, but the {aspect2} is {neg_adj}" in template.text:
            assert template.label == "negative"
        if "{neg_adj}, but overall" in template.text:
            assert template.label == "positive"


# --- train / eval disjointness -------------------------------------------------------------


def test_template_counts_and_ids():
    assert len(TRAIN_TEMPLATES) >= 40 and len(EVAL_TEMPLATES) >= 15
    train_ids = [t.id for t in TRAIN_TEMPLATES]
    eval_ids = [t.id for t in EVAL_TEMPLATES]
    assert len(set(train_ids)) == len(train_ids) and len(set(eval_ids)) == len(eval_ids)
    assert all(i.startswith("train.") for i in train_ids) and all(i.startswith("eval.") for i in eval_ids)
    for split in ("train", "eval"):
        kinds = {t.kind for t in synthetic.templates_for(split)}
        assert kinds == {"entities", "relations", "structure", "sentiment", "topic", "negative"}


def test_train_and_eval_templates_are_disjoint():
    assert not {t.text for t in TRAIN_TEMPLATES} & {t.text for t in EVAL_TEMPLATES}
    assert not {t.shape for t in TRAIN_TEMPLATES} & {t.shape for t in EVAL_TEMPLATES}
    # different wording too: no run of four fixed words is shared
    train_grams = set().union(*(_ngrams(_fixed_words(t), 4) for t in TRAIN_TEMPLATES))
    eval_grams = set().union(*(_ngrams(_fixed_words(t), 4) for t in EVAL_TEMPLATES))
    assert not train_grams & eval_grams
    # the review phrase banks are split as well
    for bank, train_phrases in synthetic._REVIEW_BANKS["train"].items():
        assert not set(train_phrases) & set(synthetic._REVIEW_BANKS["eval"][bank]), bank


def test_records_come_from_their_split_templates():
    tagged = build_tagged_records(1500, seed=0, split="eval")
    assert {tid for tid, _ in tagged} <= {t.id for t in EVAL_TEMPLATES}
    assert len({tid for tid, _ in tagged}) == len(EVAL_TEMPLATES)
    tagged = build_tagged_records(1500, seed=0, split="train")
    assert {tid for tid, _ in tagged} == {t.id for t in TRAIN_TEMPLATES}


def test_no_eval_input_in_train(train, evaluation):
    assert not {r["input"] for r in train} & {r["input"] for r in evaluation}


# --- README examples ----------------------------------------------------------------------


def test_readme_phrases_are_reserved():
    for phrase in README_PHRASES:
        assert synthetic._is_reserved(synthetic._words(phrase)), phrase
    for sentence in README_SENTENCES:
        assert synthetic._is_reserved(synthetic._words(sentence)), sentence
    assert not synthetic._is_reserved(synthetic._words("Maria Lopez joined Brightwave Labs in Denver."))


def test_readme_examples_never_appear(both):
    readme_trigrams = _ngrams([synthetic._words(s) for s in README_SENTENCES], 3)
    phrase = re.compile(r"\b(?:" + "|".join(map(re.escape, README_PHRASES)) + r")\b", re.IGNORECASE)
    for template in TRAIN_TEMPLATES + EVAL_TEMPLATES:
        assert not phrase.search(template.text), template.id
        assert not _ngrams(_fixed_words(template), 3) & readme_trigrams, template.id
    source = Path(synthetic.__file__).read_text(encoding="utf-8")
    assert not phrase.search(source)
    for records in both.values():
        for record in records:
            text = record["input"]
            assert text not in README_SENTENCES
            assert not phrase.search(text), text
            assert not _ngrams([synthetic._words(text)], 3) & readme_trigrams, text


# --- speed ----------------------------------------------------------------------------------


def test_fast():
    import time

    start = time.perf_counter()
    build_records(5000, seed=7, split="train")
    assert time.perf_counter() - start < 5
