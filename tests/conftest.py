"""Fixtures: checkpoints built here (random weights, no hub), loaded models, a running stack."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

SEED_TEXT = "Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday."


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gliner")


@pytest.fixture(scope="session")
def cache_dir(work_dir) -> Path:
    return work_dir / "cache"


@pytest.fixture(scope="session")
def span_checkpoint(work_dir) -> Path:
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return build_deberta_checkpoint(work_dir / "span-ckpt", seed=1)


@pytest.fixture(scope="session")
def boundary_checkpoint(work_dir) -> Path:
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return build_deberta_checkpoint(work_dir / "boundary-ckpt", seed=2, architecture="boundary")


@pytest.fixture(scope="session")
def checkpoints(span_checkpoint, boundary_checkpoint) -> dict[str, Path]:
    return {"span": span_checkpoint, "boundary": boundary_checkpoint}


_models: dict = {}


def loaded(path: Path, precision: str, cache_dir: Path):
    """Loaded models are shared across the session (loading costs seconds)."""
    from gliner_server.runtime.loaded_model import load_model

    key = (str(path), precision)
    if key not in _models:
        _models[key] = load_model(str(path), precision=precision, cache_dir=cache_dir)
    return _models[key]
