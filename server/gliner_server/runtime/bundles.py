"""Bundles for the lean runtime: a bundle directory as given, or a checkpoint converted into the cache on first use.

A hub id or checkpoint directory (plus an optional LoRA adapter) is converted
once per (content digest, weight format, converter revision, OpenVINO version)
into ``CACHE_DIR/bundles/``, by ``gliner2-convert`` run as a child process: the
conversion needs PyTorch, transformers and gliner2 (the ``convert`` extra), and
running it apart keeps the serving process free of them (and of the hundreds of
MB they would keep resident). Replicas sharing a cache each convert under a
name of their own and the first rename wins.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

from ..lean.bundle import CONVERTER_REVISION, Bundle, BundleError, is_bundle, open_bundle
from ..lean.openvino_compile import ir_weights
from ..lifetime import child_env
from .checkpoint import CheckpointUnavailable, content_digest, resolve_checkpoint
from .heartbeat import Heartbeat

logger = logging.getLogger(__name__)

# gliner2-convert's exit status for a model the lean runtime cannot run (served by the library instead).
UNSUPPORTED_EXIT = 3


def bundle_dir(cache_dir: Path, digest: str, precision: str) -> Path:
    import openvino as ov

    version = ov.get_version().split("-")[0]
    return cache_dir / "bundles" / f"{digest}-{ir_weights(precision)}-c{CONVERTER_REVISION}-ov{version}"


def source_digest(checkpoint_dir: Path, adapter: Path | None, cache_dir: Path) -> str:
    digest = content_digest(checkpoint_dir, cache_dir)
    if adapter is not None:
        combined = f"{digest}+{content_digest(adapter, cache_dir)}"
        digest = hashlib.sha256(combined.encode()).hexdigest()[:32]
    return digest


def find_bundle(model_id: str, precision: str, cache_dir: Path,
                adapter: str | Path | None = None) -> tuple[Bundle | None, float]:
    """``(bundle, seconds spent converting)``; the bundle is None when the lean runtime cannot run the model.

    ``model_id`` may itself be a bundle directory. Otherwise the checkpoint is
    converted unless its bundle is already cached.
    """
    local = Path(model_id).expanduser()
    if is_bundle(local):
        if adapter is not None:
            raise CheckpointUnavailable(f"{model_id} is a converted bundle: merge the adapter when converting "
                                        "(gliner2-convert --adapter DIR)")
        return open_bundle(local), 0.0
    checkpoint = resolve_checkpoint(model_id)
    adapter_dir = Path(adapter).expanduser().resolve() if adapter is not None else None
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointUnavailable(f"No LoRA adapter at {adapter}: expected a directory with adapter_config.json")
    target = bundle_dir(cache_dir, source_digest(checkpoint.path, adapter_dir, cache_dir), precision)
    unsupported = target.with_name(target.name + ".unsupported")
    if unsupported.is_file():
        return None, 0.0
    if is_bundle(target):
        return open_bundle(target), 0.0
    started = time.perf_counter()
    logger.info("converting %s into a bundle (%s, first use; needs the 'convert' extra): %s",
                model_id, precision, target)
    command = [sys.executable, "-m", "gliner_server.conversion.bundle", str(checkpoint.path), str(target),
               "--precision", precision, "--if-missing", "--cache-dir", str(cache_dir)]
    if adapter_dir is not None:
        command += ["--adapter", str(adapter_dir)]
    # The conversion dies with this process (a SIGTERM during start-up stops both at once).
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=child_env())
    tail: list[str] = []
    with Heartbeat(f"converting {model_id}", logger) as progress:
        for line in process.stderr:
            line = line.rstrip()
            if line:
                # the converter's own lines name its steps (loading, encoder to IR, heads, writing)
                progress.step(f"gliner2-convert: {line}")
                tail = (tail + [line])[-20:]
        code = process.wait()
    seconds = time.perf_counter() - started
    if code == UNSUPPORTED_EXIT:
        logger.info("%s: %s; serving it through the gliner2 library", model_id, tail[-1] if tail else "unsupported")
        unsupported.parent.mkdir(parents=True, exist_ok=True)
        unsupported.write_text((tail[-1] if tail else "unsupported") + "\n")
        return None, seconds
    if code != 0:
        reason = next((line for line in reversed(tail) if "ModuleNotFoundError" in line), None)
        if reason:
            raise CheckpointUnavailable(
                f"Converting {model_id} needs PyTorch, transformers and gliner2 ({reason.split(':', 1)[-1].strip()}"
                "). Install the convert extra (pip install 'gliner2-service[convert]'), or convert on another "
                "machine with gliner2-convert and serve the bundle directory.")
        raise CheckpointUnavailable(f"Converting {model_id} failed (exit {code}): {tail[-1] if tail else ''}")
    logger.info("converted %s in %.1f s", model_id, seconds)
    try:
        return open_bundle(target), seconds
    except BundleError as error:
        raise CheckpointUnavailable(str(error)) from None
