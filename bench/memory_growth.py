"""Resident memory of the server over thousands of ordinary, varied requests.

Starts the real ``gliner2-serve`` (the tiny random checkpoint by default) and
sends ``/gliner-2`` requests from a few clients: after 1 000 to warm up,
random texts of random lengths and, in a first phase, labels no request shared;
in a second phase, a fixed label set. Every ``--every`` requests it prints the server process's RSS, so a
cache or buffer that grows with traffic shows as a climbing line; the summary
gives the growth from the end of warm-up to the end of each phase.

    .venv/bin/python bench/memory_growth.py                       # 2 x 2000 requests, tiny checkpoint
    .venv/bin/python bench/memory_growth.py --requests 4000 --serve-args "--batch-size 32"
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KEY, ROOT, bench_checkpoint, cpu_busy_fraction, write_report


def drive(stack, count: int, unique_labels: bool, clients: int, every: int, seed: int) -> list[tuple[int, float]]:
    """``count`` varied calls; the server's RSS (MiB) after every ``every``-th."""
    from helpers import rss_bytes, varied_traffic

    timeline: list[tuple[int, float]] = []
    varied_traffic(stack.base_url, KEY, count, seed=seed, unique_labels=unique_labels, clients=clients, every=every,
                   on_every=lambda n: timeline.append((n, rss_bytes(stack.process.pid) / 2**20)))
    return sorted(timeline)


def main() -> None:
    from conftest import start_stack, stop_stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per phase (default 2000)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--base", action="store_true", help="the deberta-v3-base-shaped checkpoint instead")
    parser.add_argument("--serve-args", default="", help="extra gliner2-serve flags")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import tempfile

    busy = cpu_busy_fraction()
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as tmp:
        checkpoint = bench_checkpoint(ROOT / "var" / "bench", tiny=not args.base)
        stack = start_stack(checkpoint, ROOT / "var" / "bench" / "cache", Path(tmp) / "run", "--api-key", KEY,
                            *shlex.split(args.serve_args), timeout=300)
        try:
            drive(stack, 1000, True, args.clients, 50, seed=0)   # warm-up: OpenVINO's runtime cache fills
            warm = drive(stack, 50, True, args.clients, 50, seed=99)[-1][1]
            print(f"after warm-up: {warm:.0f} MiB", flush=True)
            phases = {}
            for name, unique in (("unique labels", True), ("fixed labels", False)):
                timeline = drive(stack, args.requests, unique, args.clients, args.every, seed=len(phases) + 1)
                for index, mb in timeline:
                    print(f"  {name:14s} {index:6d} requests  RSS {mb:8.1f} MiB", flush=True)
                phases[name] = timeline
        finally:
            stop_stack(stack)
    end = phases["fixed labels"][-1][1]
    first_end = phases["unique labels"][-1][1]
    print(f"RSS after warm-up {warm:.0f} MiB -> {first_end:.0f} MiB after unique labels -> {end:.0f} MiB after "
          f"fixed labels: {100 * (end - warm) / warm:+.1f} % (machine busy {100 * busy:.0f} % before)")
    write_report({"warm_mb": warm, "phases": phases, "growth_pct": 100 * (end - warm) / warm, "busy": busy},
                 args.out, "memory-growth")


if __name__ == "__main__":
    main()
