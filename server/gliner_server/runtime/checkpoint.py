"""Finding a GLiNER2 checkpoint on disk: a local directory or a Hugging Face hub id.

A hub id is resolved with ``huggingface_hub.snapshot_download`` (so the usual
HF_HOME / HF_HUB_OFFLINE settings apply). When the hub cannot be reached we
fail fast with a message that says how to serve a local checkpoint instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path


class CheckpointUnavailable(RuntimeError):
    """The checkpoint could not be found locally nor fetched."""


@dataclass(frozen=True)
class Checkpoint:
    model_id: str     # what the user asked for (hub id or directory)
    path: Path        # local directory holding config.json and the weights


_HOW_TO_SERVE_LOCAL = (
    "Serve a local checkpoint instead: `gliner2-serve --model /path/to/checkpoint`, "
    "where the directory holds config.json and the weights (e.g. from "
    "`huggingface-cli download fastino/gliner2-base-v1 --local-dir DIR` on a machine "
    "with access, or the untrained demo checkpoint from `gliner2-build-demo-model DIR`)."
)


def resolve_checkpoint(model_id: str) -> Checkpoint:
    local = Path(model_id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise CheckpointUnavailable(
                f"{local} is a directory but has no config.json; it is not a GLiNER2 checkpoint. "
                + _HOW_TO_SERVE_LOCAL
            )
        return Checkpoint(model_id=model_id, path=local.resolve())
    if model_id.startswith((".", "/", "~")) or os.sep in model_id.strip("/").replace("/", "", 1):
        raise CheckpointUnavailable(f"No checkpoint directory at {model_id}. " + _HOW_TO_SERVE_LOCAL)
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id=model_id, etag_timeout=5)
    except Exception as error:  # any hub failure gets the same guidance
        raise CheckpointUnavailable(
            f"Could not fetch {model_id!r} from the Hugging Face hub "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            + _HOW_TO_SERVE_LOCAL
        ) from error
    return Checkpoint(model_id=model_id, path=Path(path))


def content_digest(path: Path, cache_dir: Path) -> str:
    """A digest of every file in the checkpoint, keying the OpenVINO IR cache.

    Hashing a base-size checkpoint takes about a second, so digests are
    memoised per (file, size, mtime) in ``cache_dir/digests.json``.
    """
    # A checkpoint's own .cache folder (the hub's download metadata) is skipped; the folders above it are not
    # looked at (a hub snapshot lives under ~/.cache/huggingface: its files must still count).
    files = sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts)
    stamp = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    stamp_key = hashlib.sha256(json.dumps([str(path), stamp]).encode()).hexdigest()
    memo_path = cache_dir / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if stamp_key in memo:
        return memo[stamp_key]
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path)).encode() + b"\0")
        with p.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()[:32]
    memo[stamp_key] = value
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A name of this process's (and thread's) own: replicas sharing a cache write it at once.
    tmp = memo_path.with_name(f"{memo_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(memo))
    tmp.replace(memo_path)
    return value
