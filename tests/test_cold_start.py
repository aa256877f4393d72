"""Cold start with a cached encoder IR: no PyTorch encoder, the same model, no Alembic.

When the encoder's OpenVINO IR is cached, ``load_model`` never builds the
library's PyTorch encoder (``runtime/lean_load.py``) and compiles the IR while
the heads load; a history database already at head is opened without Alembic.
These tests pin those behaviours and that the model is the one the full load
builds, bit for bit. Start-up times are measured by ``bench/cold_start.py``,
never asserted here (the machine is shared).
"""
from __future__ import annotations

import re

import pytest
import torch

from conftest import SEED_TEXT, loaded, start_stack, stop_stack
from helpers import assert_match

from gliner_server.runtime import lean_load, openvino_encoder
from gliner_server.runtime.loaded_model import load_model
from gliner_server.runtime.openvino_encoder import OpenVINOEncoder

TEXTS = [
    SEED_TEXT,
    "Satya Nadella, who leads Microsoft from Redmond, met Sundar Pichai of Google in Paris on Monday.",
    "The deal, worth $2 billion, covers chips built by TSMC in Taiwan.",
]


def _outputs(model) -> list:
    schema = (model.create_schema().entities(["company", "person", "location"])
              .classification("tone", ["formal", "casual"]).relations(["works_for", "located_in"]))
    schema.structure("deal").field("value", dtype="str").field("parties", dtype="list")
    return model.batch_extract(TEXTS, schema, threshold=0.0, include_confidence=True, include_spans=True)


@pytest.fixture(scope="module", params=["span", "boundary"])
def full_load(request, checkpoints, tmp_path_factory):
    """A fresh IR cache and the load that filled it (the library's full load plus conversion)."""
    path = checkpoints[request.param]
    cache = tmp_path_factory.mktemp(f"cold-{request.param}")
    full = load_model(str(path), precision="f32", cache_dir=cache, runtime="library")
    return path, cache, full


def test_cached_ir_load_never_builds_the_pytorch_encoder(full_load, monkeypatch):
    import safetensors
    from gliner2.models.base import BaseExtractorModel
    from gliner2.models.boundary import model as boundary_module
    from gliner2.models.span import model as span_module

    path, cache, _ = full_load
    built = []  # for each encoder the library builds: the devices of its tensors
    library_load_encoder = BaseExtractorModel._load_encoder

    def recording_load_encoder(*args, **kwargs):
        encoder = library_load_encoder(*args, **kwargs)
        built.append({t.device.type for t in [*encoder.parameters(), *encoder.buffers()]})
        return encoder

    read = []  # names of the checkpoint tensors read
    real_safe_open = safetensors.safe_open

    class RecordingSafeOpen:
        def __init__(self, *args, **kwargs):
            self._file = real_safe_open(*args, **kwargs)

        def __enter__(self):
            self._file.__enter__()
            return self

        def __exit__(self, *exc):
            return self._file.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self._file, name)

        def get_tensor(self, name):
            read.append(name)
            return self._file.get_tensor(name)

    def refuse(*_args, **_kwargs):
        raise AssertionError("a cold start from a cached IR must not read the whole checkpoint nor convert")

    monkeypatch.setattr(BaseExtractorModel, "_load_encoder", staticmethod(recording_load_encoder))
    monkeypatch.setattr(safetensors, "safe_open", RecordingSafeOpen)
    monkeypatch.setattr(span_module, "load_checkpoint_state_dict", refuse)
    monkeypatch.setattr(boundary_module, "load_checkpoint_state_dict", refuse)
    monkeypatch.setattr(openvino_encoder, "export_ir", refuse)

    cold = load_model(str(path), precision="f32", cache_dir=cache, runtime="library")
    assert built == [{"meta"}], "the encoder module is built once, on the meta device, and never materialised"
    assert read and not [name for name in read if name.startswith("encoder.")]
    assert isinstance(cold.model.encoder, OpenVINOEncoder)
    assert {t.device.type for t in [*cold.model.parameters(), *cold.model.buffers()]} == {"cpu"}


def test_cached_ir_load_is_the_full_load(full_load, cache_dir):
    path, cache, full = full_load
    cold = load_model(str(path), precision="f32", cache_dir=cache, runtime="library")
    assert type(cold.model) is type(full.model)
    ours, theirs = cold.model.state_dict(), full.model.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[name], theirs[name]) and ours[name].dtype == theirs[name].dtype for name in ours)
    assert cold.model.encoder.config.to_dict() == full.model.encoder.config.to_dict()
    assert cold.model.name_or_path == full.model.name_or_path and cold.weights_bytes == full.weights_bytes
    assert not cold.model.training
    assert _outputs(cold.model) == _outputs(full.model)  # same compiled encoder, same heads: identical
    reference = loaded(path, "torch", cache_dir).model  # and the library's PyTorch reference agrees
    labels = ["company", "person", "location"]
    for text in TEXTS:
        assert_match(cold.model.extract_entities(text, labels, include_confidence=True, include_spans=True),
                     reference.extract_entities(text, labels, include_confidence=True, include_spans=True))


def test_unsupported_library_falls_back_to_the_full_load(full_load, monkeypatch):
    path, cache, full = full_load
    monkeypatch.setattr(lean_load, "SUPPORTED_LIBRARY_VERSION", "0.0.0")
    cold = load_model(str(path), precision="f32", cache_dir=cache, runtime="library")
    assert isinstance(cold.model.encoder, OpenVINOEncoder)
    assert _outputs(cold.model) == _outputs(full.model)


def test_encoder_compilation_errors_reach_the_caller(tmp_path):
    compilation = lean_load.EncoderCompilation(tmp_path / "missing" / "encoder.xml", "f32", cache_dir=None)
    with pytest.raises(Exception):
        compilation.result()


def test_history_at_head_is_opened_without_alembic(tmp_path, monkeypatch):
    import alembic.command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gliner_server.history import database
    from gliner_server.history.store import HistoryStore

    config = Config()
    config.set_main_option("script_location", str(database._MIGRATIONS))
    assert database.script_heads() == set(ScriptDirectory.from_config(config).get_heads())

    url = f"sqlite:///{tmp_path / 'history.db'}"
    HistoryStore.open(url).close()  # a new database: migrated by Alembic

    def refuse(*_args, **_kwargs):
        raise AssertionError("a database at head needs no migration run")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    HistoryStore.open(url).close()
    with pytest.raises(AssertionError, match="no migration run"):  # a new database still migrates
        HistoryStore.open(f"sqlite:///{tmp_path / 'new.db'}")


def test_script_heads_read_both_alembic_templates_and_refuse_to_guess(tmp_path, monkeypatch):
    import shutil

    from gliner_server.history import database

    migrations = tmp_path / "migrations"
    shutil.copytree(database._MIGRATIONS, migrations)
    monkeypatch.setattr(database, "_MIGRATIONS", migrations)
    [head] = database.script_heads()
    (migrations / "versions" / "9999_next.py").write_text(
        f'from typing import Union\nrevision: str = "9999"\ndown_revision: Union[str, None] = "{head}"\n')
    assert database.script_heads() == {"9999"}
    (migrations / "versions" / "helpers.py").write_text("X = 1\n")  # unreadable as a revision: let Alembic decide
    assert database.script_heads() == set()


def test_the_serve_command_serves_a_bundle_and_the_library_path_skips_the_pytorch_encoder(
        span_checkpoint, cache_dir, work_dir):
    loaded(span_checkpoint, "f32", cache_dir)                      # the bundle is cached
    loaded(span_checkpoint, "f32", cache_dir, runtime="library")   # and so is the library path's IR
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "cold-start-stack")
    try:
        log = stack.log_path.read_text()
        assert "since process start; model loaded in " in log and "lean runtime (no PyTorch))" in log
        assert re.search(r"phases: interpreter and imports [0-9.]+s, set-up [0-9.]+s, model [0-9.]+s, "
                         r"warm-up [0-9.]+s, Envoy routing [0-9.]+s", log), log[-3000:]
        assert "converting" not in log      # the cached bundle, not a new conversion
    finally:
        assert stop_stack(stack) == 0, stack.log()
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "cold-start-library", "--runtime", "library")
    try:
        log = stack.log_path.read_text()
        assert "loaded the heads only, no PyTorch encoder" in log
        assert "gliner2 library runtime, " in log and "s of it importing the library)" in log
    finally:
        assert stop_stack(stack) == 0, stack.log()
