"""Held-out evaluation: precision, recall and F1 of a gliner2 model on training records.

Each record's own output says what to ask (its entity types, classification
tasks, structures and relations) and what the right answer is. The model is
asked through the library's ``batch_extract`` with a schema built from the
record, and its answer is compared item by item, case-insensitively:

* entities: (type, mention) pairs, negatives (types with no mention) included;
* classifications: (task, label) pairs (one per label of a multi-label task);
* structures: (structure.field, value) over every instance;
* relations: (relation, head, tail) triples (relations with other fields than
  head and tail are not scored).

Counts are pooled over the split (micro-averaged) and kept per label.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gliner2.training.metrics import f1_from_counts


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: set, gold: set) -> None:
        self.tp += len(predicted & gold)
        self.fp += len(predicted - gold)
        self.fn += len(gold - predicted)

    def scores(self) -> dict:
        if self.tp + self.fp + self.fn == 0:
            precision = recall = f1 = 0.0
        else:
            precision, recall, f1 = _prf(self.tp, self.fp, self.fn)
        return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                "true_positives": self.tp, "false_positives": self.fp, "false_negatives": self.fn}


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    import logging

    quiet = logging.getLogger("gliner2.training.metrics")
    level, quiet.level = quiet.level, logging.ERROR   # it warns on every empty denominator
    try:
        return f1_from_counts(tp, fp, fn)
    finally:
        quiet.setLevel(level)


@dataclass
class Evaluation:
    records: int = 0
    total: Counts = field(default_factory=Counts)
    labels: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    support: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, label: str, predicted: Iterable, gold: Iterable) -> None:
        predicted, gold = set(predicted), set(gold)
        self.total.add(predicted, gold)
        self.labels[label].add(predicted, gold)
        self.support[label] += len(gold)

    def summary(self) -> dict:
        return {"records": self.records, **self.total.scores(),
                "labels": {label: {**counts.scores(), "support": self.support[label]}
                           for label, counts in sorted(self.labels.items())}}


def _norm(value: Any) -> str:
    if isinstance(value, dict):   # a span with offsets (include_spans) or a choice field
        value = value.get("text", value.get("value", ""))
    return " ".join(str(value).split()).lower()


def _values(value: Any) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, dict) and "value" in value and "choices" in value:
        value = value["value"]
    return [v for v in (value if isinstance(value, list) else [value]) if v not in (None, "")]


def _entities(output: dict) -> dict:
    """A record's entity types and mentions; a described type without mentions is a negative (as the library
    trains it)."""
    entities = dict(output.get("entities") or {})
    for label in output.get("entity_descriptions") or {}:
        entities.setdefault(label, [])
    return entities


def build_schema(model, output: dict):
    """The library schema that asks a model what ``output`` (a training record's) answers."""
    schema = model.create_schema()
    entities = _entities(output)
    if entities:
        schema.entities(list(entities))
    for task in output.get("classifications") or []:
        schema.classification(task["task"], list(task["labels"]), multi_label=bool(task.get("multi_label")))
    seen = set()
    for instance in output.get("json_structures") or []:
        for name, fields in instance.items():
            if name in seen:
                continue
            seen.add(name)
            builder = schema.structure(name)
            for field_name, value in fields.items():
                choices = value.get("choices") if isinstance(value, dict) else None
                builder.field(field_name, dtype="list" if isinstance(value, list) else "str", choices=choices)
    relations = [name for relation in output.get("relations") or [] for name in relation]
    if relations:
        schema.relations(list(dict.fromkeys(relations)))
    return schema


def score_record(evaluation: Evaluation, output: dict, predicted: dict) -> None:
    """Add one record's comparison (its gold ``output``, the model's formatted ``predicted``)."""
    evaluation.records += 1
    found = predicted.get("entities") or {}
    for label, mentions in _entities(output).items():
        evaluation.add(label, {_norm(m) for m in found.get(label) or []}, {_norm(m) for m in mentions})
    for task in output.get("classifications") or []:
        name = task["task"]
        gold = task["true_label"] if isinstance(task["true_label"], list) else [task["true_label"]]
        answer = predicted.get(name)
        answers = answer if isinstance(answer, list) else ([answer] if answer else [])
        evaluation.add(name, {_norm(a) for a in answers}, {_norm(g) for g in gold})
    gold_fields: dict[str, set] = defaultdict(set)
    asked: dict[str, set] = defaultdict(set)
    for instance in output.get("json_structures") or []:
        for name, fields in instance.items():
            for field_name, value in fields.items():
                asked[name].add(field_name)
                gold_fields[f"{name}.{field_name}"].update(_norm(v) for v in _values(value))
    for name, field_names in asked.items():
        for field_name in field_names:
            got = {_norm(v) for instance in predicted.get(name) or [] if isinstance(instance, dict)
                   for v in _values(instance.get(field_name))}
            evaluation.add(f"{name}.{field_name}", got, gold_fields[f"{name}.{field_name}"])
    gold_relations: dict[str, set] = defaultdict(set)
    for relation in output.get("relations") or []:
        for name, fields in relation.items():
            if set(fields) == {"head", "tail"}:
                gold_relations[name].add((_norm(fields["head"]), _norm(fields["tail"])))
            else:
                gold_relations.setdefault(name, set())
    found_relations = predicted.get("relation_extraction") or {}
    for name, gold in gold_relations.items():
        got = set()
        for pair in found_relations.get(name) or []:
            if isinstance(pair, dict):
                pair = (pair.get("head"), pair.get("tail"))
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                got.add((_norm(pair[0]), _norm(pair[1])))
        evaluation.add(name, got, gold)


def evaluate(model, records: list[dict], *, threshold: float = 0.5, batch_size: int = 8,
             stop: Callable[[], None] | None = None) -> dict:
    """Scores of ``model`` (a gliner2 model) on ``records``; ``stop()`` is called between batches
    (it raises to abandon the evaluation)."""
    evaluation = Evaluation()
    for start in range(0, len(records), batch_size):
        if stop is not None:
            stop()
        batch = records[start:start + batch_size]
        schemas = [build_schema(model, record["output"]) for record in batch]
        answers = model.batch_extract([r["input"] for r in batch], schemas, batch_size=batch_size,
                                      threshold=threshold)
        for record, answer in zip(batch, answers):
            score_record(evaluation, record["output"], answer)
    return evaluation.summary()


def compare(base: dict, trained: dict) -> dict:
    """One job's evaluation (the TrainingJob.evaluation message's JSON) from two :func:`evaluate` summaries."""
    def scores(summary: dict) -> dict:
        return {k: summary[k] for k in ("precision", "recall", "f1", "true_positives", "false_positives",
                                        "false_negatives")}

    labels = {}
    for label in sorted(set(base["labels"]) | set(trained["labels"])):
        b, t = base["labels"].get(label), trained["labels"].get(label)
        labels[label] = {"base": scores(b) if b else {}, "trained": scores(t) if t else {},
                         "support": (t or b)["support"]}
    return {"records": trained["records"], "base": scores(base), "trained": scores(trained), "labels": labels}
