"""Cold start: time from spawning `gliner2-serve` to its SERVING line, with the encoder IR already cached.

Builds (once, cached) the random deberta-v3-base-shaped checkpoint and, when
its OpenVINO IR for ``--precision`` is not in ``--cache/ov-cache`` yet, runs one
untimed start that converts it. Then starts the real `gliner2-serve` ``--runs``
times, one at a time, and for each run reports

* spawn -> SERVING: wall time from ``Popen`` to the ``gliner2-serve: SERVING``
  line on the server's stdout (what a supervisor waiting for readiness sees);
* ready in: the server's own figures from its log: ``ready in X.Xs`` counts from
  the start of ``main()`` (after the CLI module's imports), ``(Y.Ys since process
  start)`` from process creation;
* cpu: CPU seconds the server process (all its threads, not Envoy) had used by
  then, from /proc: less sensitive to other load than wall time, but blind to
  work done in parallel;

and the median of each, plus how busy the machine was (share of both cores busy
with other processes, sampled for a second before, between and after the
runs: this machine is shared, and a busy one inflates every figure).

    .venv/bin/python bench/cold_start.py                     # 3 runs, f32
    .venv/bin/python bench/cold_start.py --runs 5 --precision int8
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, bench_checkpoint, cpu_busy_fraction, server_start_figures

from gliner_server.runtime.openvino_encoder import PRECISIONS


def serve_command(checkpoint: Path, cache_dir: Path, run_dir: Path, precision: str) -> list[str]:
    script = Path(sys.executable).with_name("gliner2-serve")  # the installed console script
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "gliner_server.cli"]
    return [*program, "--model", str(checkpoint), "--port", "0", "--host", "127.0.0.1",
            "--cache-dir", str(cache_dir), "--run-dir", str(run_dir), "--data-dir", str(run_dir.parent / "data"),
            "--precision", precision]


def start_once(command: list[str], log_path: Path, timeout: float) -> dict:
    """Spawn, wait for the SERVING line on stdout, stop with SIGTERM; the timings."""
    log = log_path.open("wb")
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    serving = threading.Event()
    stdout_lines: list[str] = []

    def read_stdout():
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            stdout_lines.append(line)
            if line.startswith("gliner2-serve: SERVING"):
                serving.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        while not serving.wait(0.01):
            if process.poll() is not None or time.perf_counter() - began > timeout:
                raise RuntimeError(f"gliner2-serve did not start (exit {process.poll()}):\n"
                                   + log_path.read_text(errors="replace")[-4000:])
        spawn_to_serving = time.perf_counter() - began
        cpu = process_cpu_seconds(process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        reader.join(timeout=5)
        log.close()
    figures = server_start_figures(log_path.read_text(errors="replace"))
    return {"spawn_to_serving_s": round(spawn_to_serving, 3), "ready_in_s": figures.get("ready_in_s"),
            "since_process_start_s": figures.get("since_process_start_s"),
            "library_import_s": figures.get("library_import_s"),
            "cached_ir_to_serving_s": figures.get("cached_ir_to_serving_s"), "cpu_s": cpu, "exit_code": code}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (Linux /proc), None elsewhere."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="f32", choices=PRECISIONS)
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench",
                        help="holds the checkpoint and ov-cache/ (the IR and compiled-model cache)")
    parser.add_argument("--tiny", action="store_true", help="the tiny checkpoint (smoke runs)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one start")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from gliner_server.runtime.checkpoint import content_digest
    from gliner_server.runtime.loaded_model import _ir_path

    checkpoint = bench_checkpoint(args.cache, tiny=args.tiny)
    cache_dir = args.cache / "ov-cache"
    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    try:
        ir = _ir_path(cache_dir, content_digest(checkpoint, cache_dir), args.precision)
        if not ir.is_file():
            print(f"no cached IR for {args.precision} ({ir.parent.name}): one untimed start converts it ...",
                  flush=True)
            start_once(serve_command(checkpoint, cache_dir, work / "prime", args.precision),
                       work / "prime.log", args.timeout)

        busy = [cpu_busy_fraction(1.0)]
        runs = []
        for i in range(args.runs):
            run = start_once(serve_command(checkpoint, cache_dir, work / f"run{i}", args.precision),
                             work / f"run{i}.log", args.timeout)
            runs.append(run)
            print(f"run {i + 1}: spawn -> SERVING {run['spawn_to_serving_s']:.2f} s, "
                  f"server: ready in {run['ready_in_s']} s ({run['since_process_start_s']} s since process start; "
                  f"{run['library_import_s']} s importing gliner2, {run['cached_ir_to_serving_s']} s from the "
                  f"cached IR to SERVING), "
                  f"server CPU {run['cpu_s']} s", flush=True)
            busy.append(cpu_busy_fraction(1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    spawn = [r["spawn_to_serving_s"] for r in runs]
    ready = [r["ready_in_s"] for r in runs if r["ready_in_s"] is not None]
    cpu = [r["cpu_s"] for r in runs if r["cpu_s"] is not None]
    lean = [r["cached_ir_to_serving_s"] for r in runs if r["cached_ir_to_serving_s"] is not None]
    library = [r["library_import_s"] for r in runs if r["library_import_s"] is not None]
    report = {"checkpoint": str(checkpoint), "precision": args.precision, "runs": runs,
              "median_spawn_to_serving_s": round(statistics.median(spawn), 3),
              "median_ready_in_s": round(statistics.median(ready), 3) if ready else None,
              "median_cpu_s": round(statistics.median(cpu), 2) if cpu else None,
              "median_cached_ir_to_serving_s": round(statistics.median(lean), 2) if lean else None,
              "median_library_import_s": round(statistics.median(library), 2) if library else None,
              "machine_busy": [round(b, 3) for b in busy]}
    print(f"\n{checkpoint.name}, precision {args.precision}, {len(runs)} runs")
    print(f"spawn -> SERVING: median {report['median_spawn_to_serving_s']:.2f} s  "
          f"(runs: {', '.join(f'{s:.2f}' for s in spawn)})")
    if ready:
        print(f"server 'ready in': median {report['median_ready_in_s']:.1f} s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in ready)})")
    if lean:
        print(f"of which importing gliner2 (torch, transformers): median {report['median_library_import_s']:.1f} s; "
              f"cached IR to SERVING (IR and heads, warm-up, Envoy): median "
              f"{report['median_cached_ir_to_serving_s']:.1f} s  (runs: {', '.join(f'{s:.1f}' for s in lean)})")
    if cpu:
        print(f"server CPU time by SERVING: median {report['median_cpu_s']:.1f} s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in cpu)})")
    print(f"machine busy with other work (1 s samples before/between/after runs): "
          f"{', '.join(f'{b:.0%}' for b in busy)}"
          + ("  -- over 25 %: figures inflated, rerun on a quieter machine" if max(busy) > 0.25 else ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
