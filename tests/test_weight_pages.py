"""Weight-file pages a compiled model no longer reads are given back, and nothing is lost doing it."""
from __future__ import annotations

import mmap
import sys
from dataclasses import replace

import pytest

from conftest import SEED_TEXT, loaded
from helpers import served_entities
from gliner_server.lean.weight_pages import release_weight_pages, weight_mappings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
LABELS = ["person", "company", "location"]


def resident(path) -> int:
    return sum(m.resident_bytes for m in weight_mappings([path.parent]) if m.path == str(path))


def test_read_only_mappings_are_dropped_and_written_ones_kept(tmp_path):
    weights, written, other = tmp_path / "model.bin", tmp_path / "scratch.bin", tmp_path / "notes.txt"
    for path in (weights, written, other):
        path.write_bytes(bytes(range(256)) * 4096)   # 1 MiB
    with open(weights, "rb") as f1, open(written, "r+b") as f2, open(other, "rb") as f3:
        read_only = mmap.mmap(f1.fileno(), 0, access=mmap.ACCESS_READ)
        private = mmap.mmap(f2.fileno(), 0, access=mmap.ACCESS_COPY)     # copy-on-write, writable
        unrelated = mmap.mmap(f3.fileno(), 0, access=mmap.ACCESS_READ)
        for view in (read_only, private, unrelated):
            sum(view[i] for i in range(0, len(view), 4096))    # touch every page
        private[0:4] = b"kept"
        assert resident(weights) == 1 << 20 and resident(written) == 1 << 20
        assert sorted(m.path for m in weight_mappings([tmp_path])) == sorted([str(weights), str(written)])

        released = release_weight_pages([tmp_path])

        assert released == 1 << 20
        assert resident(weights) == 0 and resident(written) == 1 << 20
        assert private[0:4] == b"kept" and read_only[4096:4100] == bytes(range(4))   # faulted back in
        assert 0 < resident(weights) <= 128 * 1024    # the page read, and the kernel's fault-around
        for view in (read_only, private, unrelated):
            view.close()


def test_a_loaded_bundle_keeps_few_weight_pages_and_answers_the_same(span_checkpoint, cache_dir, tmp_path):
    """A bundle model loads, warms up and gives back its weight-file pages; it then answers as a model that
    has served before, and what it reads again comes back from the page cache. A compiled-model cache of its
    own (filled by a first load) keeps other tests' models out of the mappings counted."""
    from gliner_server.lean.bundle import open_bundle
    from gliner_server.lean.model import BundleModel

    served = loaded(span_checkpoint, "f32", cache_dir)     # the session's model (converts the bundle once)
    expected = served_entities(served, SEED_TEXT, LABELS, include_confidence=True)
    bundle = open_bundle(served.model.bundle.path)
    compiled = tmp_path / "compiled"
    BundleModel.load(bundle, "f32", cache_dir=compiled)    # fills this cache
    fresh = BundleModel.load(bundle, "f32", cache_dir=compiled)
    blobs = sum(p.stat().st_size for p in compiled.rglob("*.blob"))
    mapped = [m for m in weight_mappings([compiled]) if m.read_only]
    assert blobs and mapped, "OpenVINO maps the compiled models from its cache"
    assert sum(m.resident_bytes for m in mapped) < blobs // 4
    assert served_entities(replace(served, model=fresh), SEED_TEXT, LABELS, include_confidence=True) == expected
