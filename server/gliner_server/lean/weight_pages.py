"""Give back the weight-file pages a compiled model no longer reads.

OpenVINO maps an IR's ``.bin`` (or a compiled-model cache ``.blob``) into the
process and reads all of it while compiling. The CPU plugin then keeps most
weights in buffers of its own (matrix-multiply weights repacked for its kernels),
yet every page of the mapping it read stays counted in the process's resident
memory: on deberta-v3-base's shape about 450 MB of a serving process's 1.2 GB,
of which inference touches again only the embedding rows of the tokens it sees
(``bench/lean_runtime.py`` prints the figures).

:func:`release_weight_pages` drops those pages from this process
(``madvise(MADV_DONTNEED)``) once the models are compiled. Only read-only file
mappings with no private (copy-on-write) page are touched, so nothing can be
lost: a page read again is faulted back in from the page cache, where the
dropped pages stay, shared with the other replicas mapping the same file.
Linux only; elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".bin", ".blob")
MADV_DONTNEED = 4


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    path: str
    read_only: bool
    resident_bytes: int
    private_bytes: int   # copy-on-write pages: written by the process, which dropping would lose


def weight_mappings(directories: Iterable[Path], smaps: str | None = None) -> list[Mapping]:
    """This process's mappings of weight files under ``directories`` (from ``/proc/self/smaps``)."""
    roots = [str(Path(d).resolve()) + "/" for d in directories]
    if smaps is None:
        smaps = Path("/proc/self/smaps").read_text()
    found: list[Mapping] = []
    current: dict | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            if current is not None:
                found.append(Mapping(**current))
                current = None
            path = " ".join(fields[5:]) if len(fields) > 5 else ""
            if path.endswith(WEIGHT_SUFFIXES) and any(path.startswith(root) for root in roots):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                current = dict(start=start, end=end, path=path, read_only="w" not in fields[1],
                               resident_bytes=0, private_bytes=0)
        elif current is not None and len(fields) >= 2 and fields[0] in ("Rss:", "Anonymous:"):
            key = "resident_bytes" if fields[0] == "Rss:" else "private_bytes"
            current[key] = int(fields[1]) * 1024
    if current is not None:
        found.append(Mapping(**current))
    return found


def release_weight_pages(directories: Iterable[Path]) -> int:
    """Drop the resident pages of read-only weight-file mappings under ``directories``; the bytes dropped."""
    if not sys.platform.startswith("linux"):
        return 0
    directories = [d for d in directories if d is not None]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for mapping in weight_mappings(directories):
        if not mapping.read_only or mapping.private_bytes or not mapping.resident_bytes:
            continue
        if libc.madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) != 0:
            logger.warning("could not release the pages of %s (errno %d)", mapping.path, ctypes.get_errno())
            continue
        released += mapping.resident_bytes
    return released
