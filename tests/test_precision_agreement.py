"""bench/precision_agreement.py: its comparison detects changed answers, and --smoke runs end to end."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import agreement_corpus  # noqa: E402
from precision_agreement import MODES, compare, decision_margins, key_kinds, recommend  # noqa: E402

SPEC = {"entities": ["person", "company"],
        "classifications": [{"task": "sentiment", "labels": ["positive", "negative"]},
                            {"task": "topics", "labels": ["tech", "sports"], "multi_label": True}],
        "structures": [{"name": "product", "fields": [{"name": "name", "dtype": "str"},
                                                      {"name": "tier", "dtype": "str", "choices": ["basic", "pro"]}]}],
        "relations": ["works_for"]}

RESULT = {
    "entities": {"person": [{"text": "Tim Cook", "confidence": 0.91, "start": 10, "end": 18}],
                 "company": [{"text": "Apple", "confidence": 0.88, "start": 0, "end": 5},
                             {"text": "Google", "confidence": 0.61, "start": 40, "end": 46}]},
    "sentiment": {"label": "positive", "confidence": 0.7},
    "topics": [{"label": "tech", "confidence": 0.8}],
    "product": [{"name": {"text": "iPhone 15", "confidence": 0.9, "start": 29, "end": 38},
                 "tier": {"text": "pro", "confidence": 0.75}}],
    "relation_extraction": {"works_for": [
        {"head": {"text": "Tim Cook", "confidence": 0.8, "start": 10, "end": 18},
         "tail": {"text": "Apple", "confidence": 0.85, "start": 0, "end": 5}}]},
}
KINDS = key_kinds(SPEC)


def changed(edit):
    result = copy.deepcopy(RESULT)
    edit(result)
    return result


def test_identical_results_agree_and_confidence_changes_are_drift_not_disagreement():
    same = compare(RESULT, copy.deepcopy(RESULT), KINDS)
    assert same["identical"] and same["identical_ordered"] and not same["mismatches"]
    assert all(same["kinds"].values()) and set(same["kinds"]) == {
        "entities", "classification", "multi_label", "structures", "relations"}

    def nudge(r):
        r["entities"]["person"][0]["confidence"] = 0.86
    drifted = compare(RESULT, changed(nudge), KINDS)
    assert drifted["identical"]
    assert max(drifted["drifts"]) == pytest.approx(0.05)


@pytest.mark.parametrize("kind, edit", [
    ("entities", lambda r: r["entities"]["person"][0].update(end=17)),                    # span end moved
    ("entities", lambda r: r["entities"]["company"].pop()),                               # span dropped
    ("entities", lambda r: r["entities"]["person"].append(
        {"text": "CEO", "confidence": 0.52, "start": 6, "end": 9})),                      # span added
    ("entities", lambda r: r["entities"].update(
        person=r["entities"]["company"][:1], company=r["entities"]["person"])),           # labels swapped
    ("classification", lambda r: r["sentiment"].update(label="negative")),
    ("multi_label", lambda r: r["topics"].append({"label": "sports", "confidence": 0.51})),
    ("structures", lambda r: r["product"][0]["name"].update(text="iPhone", end=35)),
    ("structures", lambda r: r["product"][0].update(tier=None)),
    ("relations", lambda r: r["relation_extraction"]["works_for"][0]["tail"].update(text="Google", start=40, end=46)),
])
def test_a_changed_decision_is_detected(kind, edit):
    outcome = compare(RESULT, changed(edit), KINDS)
    assert not outcome["identical"]
    assert outcome["kinds"][kind] is False
    assert all(ok for k, ok in outcome["kinds"].items() if k != kind)
    assert outcome["mismatches"] and {m["kind"] for m in outcome["mismatches"]} == {kind}
    assert sum(outcome["matched"].values()) < sum(outcome["union"].values())


def test_order_only_changes_are_identical_but_not_ordered():
    def reorder(r):
        r["entities"]["company"].reverse()
    outcome = compare(RESULT, changed(reorder), KINDS)
    assert outcome["identical"] and not outcome["identical_ordered"]


def test_decision_margins_see_thresholds_and_near_ties():
    candidates = copy.deepcopy(RESULT)
    # Overlapping runner-up for "Tim Cook" (0.91): "Tim" at 0.90 -> margin 0.01, not 0.41.
    candidates["entities"]["person"].append({"text": "Tim", "confidence": 0.90, "start": 10, "end": 13})
    candidates["sentiment"] = [{"label": "positive", "confidence": 0.7}, {"label": "negative", "confidence": 0.3}]
    candidates["topics"] = [{"label": "tech", "confidence": 0.8}, {"label": "sports", "confidence": 0.2}]
    margins = decision_margins(RESULT, candidates, SPEC, 0.5)
    assert margins[("entity", "person", "Tim Cook", 10, 18)] == pytest.approx(0.01)
    assert margins[("entity", "company", "Google", 40, 46)] == pytest.approx(0.11)
    assert margins[("label", "sentiment", "positive")] == pytest.approx(0.4)
    assert margins[("label", "topics", "tech")] == pytest.approx(0.3)
    # A lost near-tie is reported with its margin, and does not count as a confident item.
    outcome = compare(RESULT, changed(lambda r: r["entities"]["person"][0].update(end=13, text="Tim")), KINDS, margins)
    lost = [m for m in outcome["mismatches"] if m["only_in"] == "reference"]
    assert lost[0]["margin"] == pytest.approx(0.01)
    assert outcome["confident_matched"] == outcome["confident"]


def test_recommendation_is_the_fastest_mode_at_or_above_the_rule():
    rows = {"f32": {"identical_pct": 100.0, "median_ms": 10.0}, "bf16": {"identical_pct": 99.5, "median_ms": 7.0},
            "int8": {"identical_pct": 98.0, "median_ms": 5.0}, "f32 vs torch": {"identical_pct": 100.0, "median_ms": 10.0}}
    assert recommend(rows)[0] == "bf16"
    rows["bf16"]["identical_pct"] = 90.0
    assert recommend(rows)[0] == "f32"
    # bf16 on a CPU without bf16 runs as f32: faster by noise only, never the pick
    rows["bf16"].update(identical_pct=100.0, median_ms=9.0, runs_as_f32=True)
    best, reason = recommend(rows)
    assert best == "f32" and "bf16 runs as f32 on this CPU" in reason


def test_corpus_is_data_large_and_covers_every_task_kind():
    """The corpus is a JSONL data file (no Python literals), read the same way every time."""
    lines = agreement_corpus.CORPUS_FILE.read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line)["id"] for line in lines)
    pairs = agreement_corpus.pairs()
    assert pairs == agreement_corpus.pairs() and len(pairs) == len(lines)
    assert len(pairs) >= 200 and len({p["id"] for p in pairs}) == len(pairs)
    kinds = {k for p in pairs for k in p["kinds"]}
    assert kinds == {"entities", "classification", "multi_label", "structures", "relations"}
    assert sum(len(p["kinds"]) > 1 for p in pairs) >= 20
    assert len(agreement_corpus.schemas()) >= 30 and len(agreement_corpus.texts()) >= 80
    assert {d for _, d, _ in agreement_corpus.texts()} >= {"news", "review", "technical", "finance", "biomedical",
                                                           "legal", "email", "social", "unicode"}
    assert agreement_corpus.pairs(limit=10) == [pairs[int(i * len(pairs) / 10)] for i in range(10)]
    from gliner_server.runtime.calibration import CALIBRATION_TEXTS
    assert not set(CALIBRATION_TEXTS) & {p["text"] for p in pairs}  # agreement is measured on held-out text


def test_smoke_run_writes_the_report(tmp_path):
    out = tmp_path / "agreement.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "precision_agreement.py"), "--smoke",
                             "--cache", str(tmp_path / "cache"), "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert set(rows) >= {*MODES, "f32 vs torch", "f32 vs f32 (repeat)"}
    for name, row in rows.items():
        assert 0 <= row["identical_pct"] <= 100 and 0 <= row["item_agreement_pct"] <= 100
        assert set(row["per_kind"]) == {"entities", "classification", "multi_label", "structures", "relations"}
        assert row["median_ms"] > 0 and 0 <= row["drift_median"] <= row["drift_max"] <= 1
    assert rows["f32"]["identical_pct"] == 100.0
    assert rows["f32 vs f32 (repeat)"]["identical_pct"] == 100.0  # OpenVINO f32 is deterministic
    assert report["pairs"] == 10 and report["margins"]["all"]["n"] > 0
    assert report["recommended"] in MODES
    assert rows["f32"]["runs_as"] == "fp32 weights, f32 inference" and rows["f32"]["runs_as_f32"]
    assert f"RECOMMENDED DEFAULT PRECISION: {report['recommended']}" in result.stdout.splitlines()[-2]
