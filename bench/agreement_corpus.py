"""The precision-agreement corpus: (text × schema) pairs read from ``data/agreement_corpus.jsonl``.

The data file holds about 250 pairs, one JSON object per line (``id``,
``text_id``, ``domain``, ``text``, ``schema_id``, ``schema``). The texts are
realistic: news, reviews, technical, finance, sports, biomedical, legal, e-mail,
social media, several languages and scripts, from a few words to ~300 tokens,
with and without punctuation (lowercased variants ``…-nopunct``). Each text is
paired with three schemas, mostly suited to its domain. The schemas cover every
GLiNER2 task kind: entities (plain and with descriptions), classification
(single- and multi-label, with and without label descriptions), structures
(``str`` / ``list`` fields, fields with choices, field descriptions), relations,
and combinations.

A schema spec is plain JSON: ``entities`` (a list, or name → description),
``classifications`` (a list of ``{task, labels (list or name → description),
multi_label, cls_threshold}``), ``structures`` (a list of ``{name, fields:
[{name, dtype, choices, description}]}``), ``relations`` (a list, or name →
description). ``build_schema(model, spec)`` turns one into the library's
builder, the way a caller of ``batch_extract`` would.

The int8-ptq calibration texts (``gliner_server.runtime.calibration``) are a
separate set: the agreement measured here is on held-out text.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

CORPUS_FILE = Path(__file__).resolve().parent / "data" / "agreement_corpus.jsonl"


def task_kinds(spec: dict) -> list[str]:
    """Task kinds in a schema spec: entities, classification, multi_label, structures, relations."""
    kinds = []
    if spec.get("entities"):
        kinds.append("entities")
    for cls in spec.get("classifications", []):
        kinds.append("multi_label" if cls.get("multi_label") else "classification")
    if spec.get("structures"):
        kinds.append("structures")
    if spec.get("relations"):
        kinds.append("relations")
    return sorted(set(kinds))


def pairs(limit: int | None = None) -> list[dict]:
    """The corpus: [{"id", "text_id", "domain", "text", "schema_id", "schema", "kinds"}], in the file's order.

    ``limit`` keeps an evenly spread subset (for smoke runs).
    """
    out = [{**pair, "kinds": task_kinds(pair["schema"])} for pair in _read()]
    if limit is not None and limit < len(out):
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out


def texts() -> list[tuple[str, str, str]]:
    """Every text once: (id, domain, text), in the order the corpus first uses them."""
    seen: dict[str, tuple[str, str, str]] = {}
    for pair in _read():
        seen.setdefault(pair["text_id"], (pair["text_id"], pair["domain"], pair["text"]))
    return list(seen.values())


def schemas() -> dict[str, dict]:
    """Every schema spec by id, in the order the corpus first uses them."""
    out: dict[str, dict] = {}
    for pair in _read():
        out.setdefault(pair["schema_id"], pair["schema"])
    return out


@functools.lru_cache(maxsize=1)
def _read_cached() -> tuple[str, ...]:
    return tuple(line for line in CORPUS_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


def _read() -> list[dict]:
    """The file's pairs (fresh dicts each call), checked: unique ids, one text per text id, one schema per
    schema id, and every field present."""
    pairs_, by_text, by_schema = [], {}, {}
    for number, line in enumerate(_read_cached(), 1):
        pair = json.loads(line)
        missing = {"id", "text_id", "domain", "text", "schema_id", "schema"} - set(pair)
        if missing:
            raise ValueError(f"{CORPUS_FILE}:{number}: missing {sorted(missing)}")
        if by_text.setdefault(pair["text_id"], (pair["domain"], pair["text"])) != (pair["domain"], pair["text"]):
            raise ValueError(f"{CORPUS_FILE}:{number}: text {pair['text_id']} differs from its first use")
        if by_schema.setdefault(pair["schema_id"], pair["schema"]) != pair["schema"]:
            raise ValueError(f"{CORPUS_FILE}:{number}: schema {pair['schema_id']} differs from its first use")
        pairs_.append(pair)
    if len({p["id"] for p in pairs_}) != len(pairs_):
        raise ValueError(f"{CORPUS_FILE}: pair ids are not unique")
    return pairs_


def build_schema(model, spec: dict):
    """The library's schema builder for a spec (what a ``batch_extract`` caller passes)."""
    schema = model.create_schema()
    if spec.get("entities"):
        schema = schema.entities(spec["entities"])
    for cls in spec.get("classifications", []):
        options = {k: v for k, v in cls.items() if k not in ("task", "labels")}
        schema = schema.classification(cls["task"], cls["labels"], **options)
    for structure in spec.get("structures", []):
        builder = schema.structure(structure["name"])
        for field in structure["fields"]:
            builder = builder.field(field["name"], dtype=field.get("dtype", "list"), choices=field.get("choices"),
                                    description=field.get("description"))
        schema = builder.schema
    if spec.get("relations"):
        schema = schema.relations(spec["relations"])
    return schema


def summary() -> dict:
    """Counts by kind and domain, and token-free length figures (for the report)."""
    all_pairs = pairs()
    kinds: dict[str, int] = {}
    domains: dict[str, int] = {}
    for p in all_pairs:
        for k in p["kinds"]:
            kinds[k] = kinds.get(k, 0) + 1
        if len(p["kinds"]) > 1:
            kinds["combined"] = kinds.get("combined", 0) + 1
        domains[p["domain"]] = domains.get(p["domain"], 0) + 1
    words = [len(t[2].split()) for t in texts()]
    return {"pairs": len(all_pairs), "texts": len(texts()), "schemas": len(schemas()), "kinds": kinds,
            "domains": domains, "words_min": min(words), "words_max": max(words)}


if __name__ == "__main__":
    print(json.dumps(summary(), indent=1))
