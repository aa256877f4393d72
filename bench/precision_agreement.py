"""How often each precision mode gives the same answers as f32, and how fast it is.

Every (text × schema) pair of ``agreement_corpus.pairs()`` goes through
``load_model(checkpoint, precision=mode).model.batch_extract([text], schema,
include_confidence=True, include_spans=True)`` for each mode — the served path,
whatever it runs (OpenVINO encoder, heads) — and is compared with f32; f32 is
compared with the pure-library PyTorch reference (``torch``) too, and with a
repeat of itself (the noise floor: it should be 100 %).

Two results are *identical* when they hold the same decisions, confidences
aside: the same entity spans (label, text, start, end), the same classification
labels, the same structure field values (instance, field, text, start, end;
choices by text), the same relations (head and tail spans). Per mode it prints
the % of pairs identical, the % identical per task kind, item-level agreement
(matched items / all items, summed over the corpus), the max / p99 / median
confidence drift over matched items, and the median per-text latency (batch 1,
in this process, modes interleaved pair by pair). Then the recommended default:
the fastest mode whose pairs are ≥ 99 % identical to f32.

Random weights: these figures measure numerical agreement between runtimes on
an untrained model, never accuracy. Because untrained scores can sit close to
the decision thresholds, the report also gives the score margin distribution:
how far f32's candidate scores are from the threshold (a pass at threshold 0),
and how far the disagreeing items were.

    .venv/bin/python bench/precision_agreement.py            # deberta-v3-base-shaped model, all modes
    .venv/bin/python bench/precision_agreement.py --smoke --out /tmp/x.json   # tiny model, a few pairs
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agreement_corpus import build_schema
from agreement_corpus import pairs as corpus_pairs
from agreement_corpus import summary as corpus_summary
from common import ROOT, bench_checkpoint, cpu_busy_fraction, percentile, write_report

MODES = ("f32", "bf16", "int8", "int8-ptq")
KINDS = ("entities", "classification", "multi_label", "structures", "relations")
AGREEMENT_RULE = 99.0  # % of pairs identical to f32 a mode needs to be the default


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def key_kinds(spec: dict) -> dict[str, str]:
    """Top-level result key → task kind, for a schema spec of the corpus."""
    kinds = {}
    if spec.get("entities"):
        kinds["entities"] = "entities"
    for cls in spec.get("classifications", []):
        kinds[cls["task"]] = "multi_label" if cls.get("multi_label") else "classification"
    for structure in spec.get("structures", []):
        kinds[structure["name"]] = "structures"
    if spec.get("relations"):
        kinds["relation_extraction"] = "relations"
    return kinds


def thresholds(spec: dict, threshold: float) -> dict[str, float | None]:
    """Decision threshold per top-level key (None: single-label classification is an argmax)."""
    out: dict[str, float | None] = {}
    for key, kind in key_kinds(spec).items():
        out[key] = threshold if kind in ("entities", "structures", "relations") else None
    for cls in spec.get("classifications", []):
        if cls.get("multi_label"):
            out[cls["task"]] = cls.get("cls_threshold", 0.5)
    return out


def _span(value) -> tuple:
    if isinstance(value, dict):
        return (value.get("text"), value.get("start"), value.get("end"))
    return (value, None, None)


def _conf(value) -> float | None:
    return value.get("confidence") if isinstance(value, dict) else None


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def flatten(result: dict, kinds: dict[str, str]) -> list[tuple[str, tuple, tuple]]:
    """A result as decision items: ``[(kind, key, confidences)]``.

    ``key`` holds everything but confidences: equal keys are equal decisions.
    Keys of the result that the schema does not explain are kept, as kind "other",
    so that nothing a mode adds or drops goes unnoticed.
    """
    items = []
    for top, value in result.items():
        kind = kinds.get(top, "other")
        if kind == "entities":
            for label, mentions in (value or {}).items():
                for m in _as_list(mentions):
                    items.append((kind, ("entity", label, *_span(m)), (_conf(m),)))
        elif kind == "classification" or kind == "multi_label":
            for v in _as_list(value):
                label = v.get("label") if isinstance(v, dict) else v
                items.append((kind, ("label", top, label), (_conf(v),)))
        elif kind == "structures":
            for index, instance in enumerate(_as_list(value)):
                if not isinstance(instance, dict):
                    items.append((kind, ("instance", top, index, repr(instance)), ()))
                    continue
                for field, field_value in instance.items():
                    for v in _as_list(field_value):
                        items.append((kind, ("field", top, index, field, *_span(v)), (_conf(v),)))
        elif kind == "relations":
            for relation, links in (value or {}).items():
                for link in _as_list(links):
                    head, tail = (link.get("head"), link.get("tail")) if isinstance(link, dict) else (link, None)
                    items.append((kind, ("relation", relation, _span(head), _span(tail)),
                                  (_conf(head), _conf(tail))))
        else:
            items.append(("other", ("other", top, json.dumps(value, sort_keys=True, default=str)), ()))
    return items


def _strip(value):
    """The result with confidences removed, list order kept (for the order-sensitive check)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "confidence"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def compare(reference: dict, other: dict, kinds: dict[str, str], margins: dict | None = None,
            confident: float = 0.05) -> dict:
    """Compare two results of the same pair; ``reference`` is the baseline (f32).

    Returns ``identical`` (same decisions, as multisets), ``identical_ordered``
    (also in the same list order), ``kinds`` (kind → identical), ``matched`` /
    ``union`` item counts per kind, ``drifts`` (|Δconfidence| of matched items)
    and ``mismatches`` (items only one side has, with that side's confidence).
    With ``margins`` (the reference's item key → decision margin, see
    ``decision_margins``), also ``confident`` / ``confident_matched``: the
    reference's items with a margin above ``confident``, and how many of them
    ``other`` has too. Mismatched reference items carry their margin.
    """
    ref_items, other_items = flatten(reference, kinds), flatten(other, kinds)
    by_key_ref: dict[tuple, list] = defaultdict(list)
    by_key_other: dict[tuple, list] = defaultdict(list)
    kind_of: dict[tuple, str] = {}
    for kind, key, confs in ref_items:
        by_key_ref[key].append(confs)
        kind_of[key] = kind
    for kind, key, confs in other_items:
        by_key_other[key].append(confs)
        kind_of[key] = kind
    matched: Counter = Counter()
    union: Counter = Counter()
    drifts: list[float] = []
    mismatches = []
    for key in set(by_key_ref) | set(by_key_other):
        kind = kind_of[key]
        a = sorted(by_key_ref.get(key, []), key=lambda c: tuple(x or 0.0 for x in c))
        b = sorted(by_key_other.get(key, []), key=lambda c: tuple(x or 0.0 for x in c))
        n = min(len(a), len(b))
        matched[kind] += n
        union[kind] += max(len(a), len(b))
        for ca, cb in zip(a[:n], b[:n]):
            drifts.extend(abs(x - y) for x, y in zip(ca, cb) if x is not None and y is not None)
        for side, extra in (("reference", a[n:]), ("other", b[n:])):
            for confs in extra:
                mismatches.append({"kind": kind, "only_in": side, "item": list(key), "confidence": list(confs)})
    confident_total = confident_matched = 0
    if margins is not None:
        for key, confs_list in by_key_ref.items():
            if margins.get(key, 0.0) > confident:
                confident_total += len(confs_list)
                confident_matched += min(len(confs_list), len(by_key_other.get(key, [])))
        for m in mismatches:
            if m["only_in"] == "reference":
                m["margin"] = margins.get(tuple(m["item"]))
    present = set(kinds.values()) | {kind_of[k] for k in kind_of}
    kind_identical = {kind: matched[kind] == union[kind] for kind in present}
    return {
        "identical": not mismatches,
        "identical_ordered": _strip(reference) == _strip(other),
        "kinds": kind_identical,
        "matched": dict(matched),
        "union": dict(union),
        "drifts": drifts,
        "mismatches": mismatches,
        "confident": confident_total,
        "confident_matched": confident_matched,
    }


def margin_spec(spec: dict) -> dict:
    """The schema for the margin pass: every classification returns every label's probability.

    Single-label tasks become softmax "multi-label" tasks with threshold 0 (the
    same probabilities, all of them listed); multi-label tasks get threshold 0.
    Run at span threshold 0 with ``overlap_policy="allow"``, the pass lists every
    candidate with its score, so a decision's margin to its runner-up is known.
    """
    out = dict(spec)
    if spec.get("classifications"):
        out["classifications"] = [
            {**c, "multi_label": True, "cls_threshold": 0.0,
             "class_act": "sigmoid" if c.get("multi_label") else "softmax"}
            for c in spec["classifications"]]
    return out


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] is not None and b[0] is not None and a[0] < b[1] and b[0] < a[1]


def decision_margins(reported: dict, candidates: dict, spec: dict, threshold: float) -> dict[tuple, float]:
    """How close each of ``reported``'s decisions came to going the other way: item key → margin.

    * span items (entities, structure fields): the smaller of |score − threshold|
      and the gap to the best *overlapping* candidate of the same label / field
      (the greedy decoder keeps one of two overlapping spans, so a near-tie there
      flips as easily as a near-threshold score);
    * relations: |score − threshold| of the weaker of head and tail;
    * single-label classification: the gap between the top two labels;
    * multi-label: |p − cls_threshold|, or the top-two gap when no label passes
      the threshold and the library falls back to the best one.

    ``candidates`` is the same pair run through ``margin_spec`` at threshold 0
    with ``overlap_policy="allow"``. Items it cannot explain are left out.
    """
    kinds, limits = key_kinds(spec), thresholds(spec, threshold)
    groups: dict[tuple, list[tuple[tuple, float]]] = defaultdict(list)
    label_probs: dict[str, list[float]] = {}
    for kind, key, confs in flatten(candidates, {**kinds, **{c["task"]: "multi_label"
                                                             for c in spec.get("classifications", [])}}):
        if kind == "entities":
            groups[("entity", key[1])].append(((key[3], key[4]), confs[0]))
        elif kind == "structures" and key[0] == "field":
            groups[("field", key[1], key[2], key[3])].append(((key[5], key[6]), confs[0]))
        elif kind == "multi_label":
            label_probs.setdefault(key[1], []).append(confs[0])
    out: dict[tuple, float] = {}
    for kind, key, confs in flatten(reported, kinds):
        if not confs or any(c is None for c in confs):
            continue
        if kind in ("entities", "structures") and key[0] in ("entity", "field"):
            group = ("entity", key[1]) if kind == "entities" else ("field", key[1], key[2], key[3])
            span = (key[3], key[4]) if kind == "entities" else (key[5], key[6])
            margin = abs(confs[0] - limits.get(key[1] if kind == "structures" else "entities", threshold))
            rivals = [c for other, c in groups.get(group, []) if other != span and _overlaps(other, span)]
            if rivals:
                margin = min(margin, abs(confs[0] - max(rivals)))
            out[key] = margin
        elif kind == "relations":
            out[key] = abs(min(confs) - threshold)
        elif kind in ("classification", "multi_label"):
            probs = sorted(label_probs.get(key[1], []), reverse=True)
            limit = limits.get(key[1])
            if kind == "multi_label" and limit is not None and confs[0] >= limit:
                out[key] = abs(confs[0] - limit)
            elif len(probs) >= 2:
                out[key] = probs[0] - probs[1]
    return out


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------

def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def summarise(comparisons: list[dict], pair_kinds: list[list[str]], latencies: list[float] | None,
              threshold: float) -> dict:
    """One row of the table: a mode (or reference pairing) over the corpus."""
    n = len(comparisons)
    per_kind = {}
    for kind in KINDS:
        relevant = [c for c, kinds in zip(comparisons, pair_kinds) if kind in kinds]
        per_kind[kind] = {"pairs": len(relevant),
                          "identical_pct": _pct(sum(c["kinds"].get(kind, True) for c in relevant), len(relevant))}
    matched: Counter = Counter()
    union: Counter = Counter()
    for c in comparisons:
        matched.update(c["matched"])
        union.update(c["union"])
    drifts = [d for c in comparisons for d in c["drifts"]]
    mismatched = [m for c in comparisons for m in c["mismatches"]]
    # f32's items the mode lost: how many were near-ties (margin <= 0.05) in f32 itself.
    lost = [m for m in mismatched if m["only_in"] == "reference"]
    near = [m for m in lost if m.get("margin") is not None and m["margin"] <= 0.05]
    return {
        "pairs": n,
        "identical_pct": _pct(sum(c["identical"] for c in comparisons), n),
        "identical_ordered_pct": _pct(sum(c["identical_ordered"] for c in comparisons), n),
        "per_kind": per_kind,
        "item_agreement_pct": _pct(sum(matched.values()), sum(union.values())),
        "item_agreement_by_kind_pct": {k: _pct(matched[k], union[k]) for k in sorted(union)},
        "items": sum(union.values()),
        "confident_items": sum(c["confident"] for c in comparisons),
        "confident_item_agreement_pct": _pct(sum(c["confident_matched"] for c in comparisons),
                                             sum(c["confident"] for c in comparisons)),
        "mismatched_items": len(mismatched),
        "f32_items_lost": len(lost),
        "f32_items_lost_with_margin_le_0.05": len(near),
        "drift_max": round(max(drifts), 6) if drifts else 0.0,
        "drift_p99": round(percentile(drifts, 0.99), 6) if drifts else 0.0,
        "drift_median": round(statistics.median(drifts), 6) if drifts else 0.0,
        "median_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p90_ms": round(percentile(latencies, 0.9), 2) if latencies else None,
    }


def margin_summary(values: list[float]) -> dict:
    """Distribution of decision margins: how much room a decision has before it flips."""
    if not values:
        return {"n": 0}
    absolute = sorted(abs(v) for v in values)
    return {"n": len(values),
            **{f"within_{e}": _pct(sum(v <= e for v in absolute), len(absolute)) for e in (0.001, 0.01, 0.05, 0.1)},
            "p10": round(percentile(absolute, 0.10), 4), "median": round(statistics.median(absolute), 4)}


def item_kind(key: tuple, kinds: dict[str, str]) -> str:
    return {"entity": "entities", "field": "structures", "relation": "relations"}.get(
        key[0], kinds.get(key[1], "other") if len(key) > 1 else "other")


def margin_report(margins_of: list[dict], pairs: list[dict]) -> dict:
    """f32's decision margins, overall and per task kind (see ``decision_margins``)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for margins, pair in zip(margins_of, pairs):
        kinds = key_kinds(pair["schema"])
        for key, margin in margins.items():
            by_kind[item_kind(key, kinds)].append(margin)
    every = [m for values in by_kind.values() for m in values]
    return {"all": margin_summary(every), **{k: margin_summary(v) for k, v in sorted(by_kind.items())}}


def recommend(rows: dict[str, dict], rule: float = AGREEMENT_RULE) -> tuple[str, str]:
    """The fastest mode with ≥ ``rule`` % of pairs identical to f32 (f32 qualifies by definition).

    A mode that runs exactly as f32 on this machine (``runs_as_f32``: bf16 on a
    CPU without bf16, which falls back to f32) is not a candidate: any speed
    difference to f32 is noise.
    """
    eligible = {m: r for m, r in rows.items() if m in MODES and (m == "f32" or (
        (r["identical_pct"] or 0) >= rule and not r.get("runs_as_f32")))}
    best = min(eligible, key=lambda m: rows[m]["median_ms"])
    reason = (f"fastest mode with >= {rule:g}% of pairs identical to f32: {best} at {rows[best]['median_ms']} ms "
              f"median per text; " + ", ".join(f"{m} {r['identical_pct']}% / {r['median_ms']} ms"
                                                  for m, r in rows.items() if m in MODES))
    same = [m for m, r in rows.items() if m in MODES and m != "f32" and r.get("runs_as_f32")]
    if same:
        reason += f"; {', '.join(same)} run{'s' if len(same) == 1 else ''} as f32 on this CPU (not a candidate)"
    return best, reason


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def execution(model) -> str:
    """What a loaded model's encoder really runs: its IR's weights and the compiled inference precision."""
    from gliner_server.runtime.openvino_encoder import IR_WEIGHTS

    encoder = model.encoder
    hint = encoder.compiled.get_property("INFERENCE_PRECISION_HINT")
    return f"{IR_WEIGHTS[encoder.precision]} weights, {hint.get_type_name()} inference"


def agreement_checkpoint(cache: Path) -> Path:
    """deberta-v3-base's shapes with a well-conditioned random encoder and spread head scores. Cached.

    ``initializer_range=0.02``: the timing checkpoint's 0.2 makes twelve random
    layers chaotic (float32 vs float64 of one encoder differ by ~7 %), so no two
    runtimes could agree; at 0.02 they agree to ~1e-6, like a trained encoder.
    ``head_scale=1.5`` puts the span scores' median distance from the 0.5
    threshold near 0.36, with ~7 % of candidates within 0.05 of it (1.0 clusters
    them at the threshold, 2.0 saturates them at 0 and 1).
    """
    from gliner_server.random_checkpoint import deberta_v3_base_shape

    path = cache / "deberta-v3-base-shape-agreement"
    if not (path / "config.json").is_file():
        print(f"building a random deberta-v3-base-shaped checkpoint for agreement runs in {path} ...", flush=True)
        deberta_v3_base_shape(path, initializer_range=0.02, head_scale=1.5)
    return path


def run(checkpoint: Path, cache_dir: Path, modes: list[str], pairs: list[dict], *, threshold: float,
        repeats: int, warmup: int, log=print) -> dict:
    import torch

    from gliner_server.runtime.loaded_model import load_model

    torch.set_num_threads(2)
    busy_before = cpu_busy_fraction()
    names = ["torch", *modes]
    models = {}
    for name in names:
        started = time.perf_counter()
        # The library runtime: the corpus's schemas use the library's Schema builder; the encoder IR (what the
        # precision modes change) is the same one a bundle carries.
        models[name] = load_model(str(checkpoint), precision=name, cache_dir=cache_dir, runtime="library").model
        log(f"loaded {name} in {time.perf_counter() - started:.1f} s")

    def extract(name, pair, schema_threshold=threshold, spec=None, **options):
        model = models[name]
        return model.batch_extract([pair["text"]], build_schema(model, spec or pair["schema"]), batch_size=1,
                                   threshold=schema_threshold, include_confidence=True, include_spans=True,
                                   **options)[0]

    for pair in pairs[:warmup]:  # first inferences compile kernels for new shapes
        for name in names:
            extract(name, pair)

    results = {name: [] for name in names}
    repeat_f32 = []
    latencies = {name: [] for name in names}
    margins_of = []
    started = time.perf_counter()
    for index, pair in enumerate(pairs):
        order = names[index % len(names):] + names[:index % len(names)]  # rotate: no mode always runs first
        times = defaultdict(list)
        for r in range(repeats):
            for name in order:
                t0 = time.perf_counter()
                result = extract(name, pair)
                times[name].append((time.perf_counter() - t0) * 1000)
                if r == 0:
                    results[name].append(result)
                elif r == 1 and name == "f32":
                    repeat_f32.append(result)
        for name in names:
            latencies[name].append(statistics.median(times[name]))
        candidates = extract("f32", pair, 0.0, margin_spec(pair["schema"]), overlap_policy="allow")
        margins_of.append(decision_margins(results["f32"][-1], candidates, pair["schema"], threshold))
        if (index + 1) % 25 == 0 or index + 1 == len(pairs):
            log(f"  {index + 1}/{len(pairs)} pairs, {time.perf_counter() - started:.0f} s")

    pair_kinds = [p["kinds"] for p in pairs]
    kinds_of = [key_kinds(p["schema"]) for p in pairs]
    comparisons = {}
    for name in modes:
        comparisons[name] = [compare(ref, got, k, lim)
                             for ref, got, k, lim in zip(results["f32"], results[name], kinds_of, margins_of)]
    comparisons["f32 vs torch"] = [compare(ref, got, k, lim)  # f32 as the reference: its margins apply
                                   for ref, got, k, lim in zip(results["f32"], results["torch"], kinds_of, margins_of)]
    if repeat_f32:
        comparisons["f32 vs f32 (repeat)"] = [
            compare(ref, got, k, lim) for ref, got, k, lim in zip(results["f32"], repeat_f32, kinds_of, margins_of)]
    rows = {}
    for name, comps in comparisons.items():
        # Each row's latency is its "other" side's: the mode's, torch's for "f32 vs torch", f32's for the repeat.
        lat = latencies.get(name) or (latencies["torch"] if name == "f32 vs torch" else latencies["f32"])
        rows[name] = summarise(comps, pair_kinds, lat, threshold)
    rows["f32 vs torch"]["torch_median_ms"] = round(statistics.median(latencies["torch"]), 2)
    for name in modes:
        rows[name]["runs_as"] = execution(models[name])
        rows[name]["runs_as_f32"] = rows[name]["runs_as"] == execution(models["f32"])
    disagreements = {name: [{"pair": p["id"], "mismatches": c["mismatches"][:20]}
                            for p, c in zip(pairs, comps) if not c["identical"]]
                     for name, comps in comparisons.items()}
    best, reason = recommend(rows)
    return {
        "checkpoint": str(checkpoint), "modes": modes, "threshold": threshold, "repeats": repeats,
        "pairs": len(pairs), "rows": rows, "recommended": best, "recommendation_rule": reason,
        "margins": margin_report(margins_of, pairs),
        "disagreements": disagreements,
        "machine_busy": {"before": busy_before, "after": cpu_busy_fraction()},
    }


def print_report(report: dict) -> None:
    rows = report["rows"]
    header = (f"{'mode (vs f32)':22}{'pairs =':>8}{'ordered':>9}" + "".join(f"{k[:10]:>11}" for k in KINDS)
              + f"{'items =':>9}{'sure =':>8}{'drift max':>11}{'p99':>9}{'median':>10}{'ms/text':>9}")
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        kinds = "".join(f"{'-' if r['per_kind'][k]['identical_pct'] is None else r['per_kind'][k]['identical_pct']:>11}"
                        for k in KINDS)
        sure = "-" if r["confident_item_agreement_pct"] is None else r["confident_item_agreement_pct"]
        print(f"{name:22}{r['identical_pct']:>8}{r['identical_ordered_pct']:>9}{kinds}{r['item_agreement_pct']:>9}{sure:>8}"
              f"{r['drift_max']:>11.4g}{r['drift_p99']:>9.3g}{r['drift_median']:>10.2g}{r['median_ms'] or '-':>9}")
    print("(% of pairs identical overall / also in list order / per task kind; items = matched items / all items; "
          "sure = share of f32's items with a decision margin > 0.05 that the mode also gives; "
          "drift = |Δconfidence| of matched items; ms/text: median per text at batch 1, of the row's mode "
          "(the torch reference's on the 'f32 vs torch' row))")
    print("encoders as compiled on this CPU: " + "; ".join(
        f"{name}: {rows[name]['runs_as']}" for name in report["modes"] if "runs_as" in rows[name]))
    for name, r in rows.items():
        if r["mismatched_items"]:
            print(f"  {name}: {r['mismatched_items']} of {r['items']} items differ; of the {r['f32_items_lost']} "
                  f"f32 items it lost, {r['f32_items_lost_with_margin_le_0.05']} were near-ties in f32 "
                  f"(margin <= 0.05)")
    print("f32 decision margins (distance to the threshold or to the best overlapping / runner-up candidate):")
    for kind, m in report["margins"].items():
        if m["n"]:
            print(f"  {kind:15} n={m['n']:<6} <=0.001: {m['within_0.001']:>6}%  <=0.01: {m['within_0.01']:>6}%  "
                  f"<=0.05: {m['within_0.05']:>6}%  <=0.1: {m['within_0.1']:>6}%  median {m['median']}")
    busy = report["machine_busy"]
    print(f"machine busy before/after: {busy['before']:.0%} / {busy['after']:.0%} "
          "(other load; timings are noisy above 25%)")
    sure = {m: r for m, r in rows.items() if m in report["modes"]}
    passing = [m for m, r in sure.items() if (r["confident_item_agreement_pct"] or 0) >= AGREEMENT_RULE]
    fastest = min(passing, key=lambda m: sure[m]["median_ms"]) if passing else "f32"
    print("for comparison, by item agreement instead of whole pairs: fastest mode reproducing "
          f">= {AGREEMENT_RULE:g}% of f32's decisions with margin > 0.05 = {fastest} ("
          + ", ".join(f"{m} {r['confident_item_agreement_pct']}%" for m, r in sure.items()) + ")")
    print(f"RECOMMENDED DEFAULT PRECISION: {report['recommended']} ({report['recommendation_rule']})")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few pairs, one repeat")
    parser.add_argument("--modes", default=",".join(MODES), help="precision modes compared with f32")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint directory (default: a deberta-v3-base-shaped one under --cache, "
                             "built with a well-conditioned encoder; --smoke: the tiny one)")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench",
                        help="checkpoints; the OpenVINO cache is CACHE/ov-cache")
    parser.add_argument("--limit", type=int, default=None, help="use an evenly spread subset of the pairs")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per pair and mode (default 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON report (default bench/results/precision-agreement-TIME.json)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if "f32" not in modes:
        modes.insert(0, "f32")
    limit = args.limit or (10 if args.smoke else None)
    repeats = args.repeats or (2 if args.smoke else 3)
    checkpoint = args.checkpoint or (bench_checkpoint(args.cache, tiny=True) if args.smoke
                                     else agreement_checkpoint(args.cache))
    pairs = corpus_pairs(limit)
    print(f"{len(pairs)} pairs, modes {modes} + torch reference, checkpoint {checkpoint}", flush=True)
    report = run(checkpoint, args.cache / "ov-cache", modes, pairs, threshold=args.threshold, repeats=repeats,
                 warmup=3 if args.smoke else 8, log=lambda s: print(s, flush=True))
    report["smoke"] = args.smoke
    report["corpus"] = corpus_summary()
    report["command"] = " ".join([".venv/bin/python", "bench/precision_agreement.py", *(argv or sys.argv[1:])])
    print_report(report)
    write_report(report, args.out, "precision-agreement")
    return report


if __name__ == "__main__":
    main()
