"""bench/run.py --smoke runs end to end (CI runs it; nothing here is timed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--precisions", "f32",
                             "--cache", str(tmp_path / "cache"), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    sequential = [r for r in report["rows"] if r["clients"] == 1 and "speedup_vs_reference_p50" in r]
    assert {r["path"] for r in sequential} == {"reference", "runtime", "runtime+history", "grpc", "rest"}
    assert {r["case"] for r in sequential} >= {"seed, 4 labels", "combined schema"}
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in sequential)
    concurrent = [r for r in report["rows"] if "throughput_vs_reference_sequential" in r]
    assert concurrent and all(r["errors"] == 0 and r["throughput_rps"] > 0 for r in concurrent)
    assert "f32" in report["startup_s"] and "f32" in report["startup_cached_s"] and "before" in report["machine_busy"]
    assert [line for line in report["targets"] if line.startswith("  f32: REST p50")]
    assert [line for line in report["targets"] if line.startswith("  transport")]
    overhead = report["overhead"]
    assert set(overhead["paired_median_over_runtime_ms"]) == {"runtime+history", "grpc", "rest"}
    assert all(v > 0 for v in overhead["p50_ms"].values())
    assert report["startup_cached_server"]["f32"]["cached_ir_to_serving_s"] > 0
    assert "p50 ms" in result.stdout  # the table was printed


def test_transport_breakdown_smoke(tmp_path):
    out = tmp_path / "transport.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "transport_breakdown.py"), "--rounds", "3",
                             "--cache", str(tmp_path / "cache"), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["p50_ms"]) == 6 and all(v > 0 for v in report["p50_ms"].values())
    assert report["server_model_ms_p50"] > 0 and "vs direct Extract" in result.stdout
