"""The OpenVINO runtime: IR cache keyed by checkpoint content, precision modes."""
from __future__ import annotations

import shutil

import pytest

from conftest import SEED_TEXT, loaded
from helpers import assert_match, served_entities

from gliner_server.runtime.checkpoint import content_digest
from gliner_server.runtime.loaded_model import load_model

LABELS = ["company", "person", "product", "location"]


def test_ir_is_converted_once_and_reused(span_checkpoint, tmp_path, monkeypatch):
    from gliner_server.runtime import openvino_encoder

    cache = tmp_path / "cache"
    first = load_model(str(span_checkpoint), precision="f32", cache_dir=cache, runtime="library")
    irs = list((cache / "ir").glob("*/encoder.xml"))
    assert len(irs) == 1 and irs[0].with_suffix(".bin").stat().st_size > 0

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("the cached IR should have been reused")

    monkeypatch.setattr(openvino_encoder, "export_ir", no_conversion)
    second = load_model(str(span_checkpoint), precision="f32", cache_dir=cache, runtime="library")
    assert_match(served_entities(second, SEED_TEXT, LABELS, include_confidence=True),
                 served_entities(first, SEED_TEXT, LABELS, include_confidence=True))
    bf16 = load_model(str(span_checkpoint), precision="bf16", cache_dir=cache, runtime="library")  # the fp32 IR
    assert bf16.precision == "bf16"


def test_a_bundle_is_converted_once_and_reused(span_checkpoint, tmp_path, monkeypatch):
    """A checkpoint is converted into a cached bundle on first use; later loads (f32 and bf16, which share the
    fp32 IR) read it without converting, and answer the same."""
    import subprocess

    cache = tmp_path / "cache"
    first = load_model(str(span_checkpoint), precision="f32", cache_dir=cache)
    bundles = list((cache / "bundles").glob("*/manifest.json"))
    assert first.runtime == "lean" and first.convert_seconds > 0 and len(bundles) == 1

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("the cached bundle should have been reused")

    monkeypatch.setattr(subprocess, "Popen", no_conversion)
    second = load_model(str(span_checkpoint), precision="f32", cache_dir=cache)
    bf16 = load_model(str(span_checkpoint), precision="bf16", cache_dir=cache)
    assert second.convert_seconds == 0 and bf16.runtime == "lean" and bf16.precision == "bf16"
    assert_match(served_entities(second, SEED_TEXT, LABELS, include_confidence=True),
                 served_entities(first, SEED_TEXT, LABELS, include_confidence=True))


def test_cache_key_follows_checkpoint_content(span_checkpoint, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(span_checkpoint, copy)
    cache = tmp_path / "cache"
    assert content_digest(copy, cache) == content_digest(span_checkpoint, cache)
    config = copy / "config.json"
    config.write_text(config.read_text().replace("{", '{"_edited": true, ', 1))
    assert content_digest(copy, cache) != content_digest(span_checkpoint, cache)


def test_cache_key_of_a_checkpoint_under_a_cache_folder(span_checkpoint, tmp_path):
    """Hub snapshots live under ~/.cache/huggingface: their files count (two such checkpoints once shared the
    digest of nothing, hence one cached bundle); only a checkpoint's own .cache folder is skipped."""
    cache = tmp_path / "cache"
    hub = tmp_path / ".cache" / "huggingface"
    first, second = hub / "first", hub / "second"
    shutil.copytree(span_checkpoint, first)
    shutil.copytree(span_checkpoint, second)
    (second / "config.json").write_text((second / "config.json").read_text().replace("{", '{"_edited": true, ', 1))
    assert content_digest(first, cache) == content_digest(span_checkpoint, cache)
    assert content_digest(second, cache) != content_digest(first, cache)
    (first / ".cache").mkdir()
    (first / ".cache" / "download.lock").write_text("metadata")
    assert content_digest(first, cache) == content_digest(span_checkpoint, cache)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_modes_run(span_checkpoint, cache_dir, precision):
    """bf16 and int8 (weight-only) give results of the same form; their agreement with
    f32 is measured by the benchmark, not asserted to be exact."""
    model = loaded(span_checkpoint, precision, cache_dir)
    exact = loaded(span_checkpoint, "f32", cache_dir)
    got = served_entities(model, SEED_TEXT, LABELS, threshold=0.0, include_confidence=True)
    want = served_entities(exact, SEED_TEXT, LABELS, threshold=0.0, include_confidence=True)
    assert list(got["entities"]) == LABELS
    assert all(0.0 <= m["confidence"] <= 1.0 for ms in got["entities"].values() for m in ms)
    assert sum(map(len, got["entities"].values())) > 0
    top = lambda r: {label: ms[0]["text"] for label, ms in r["entities"].items() if ms}  # noqa: E731
    assert top(got).keys() == top(want).keys()


def test_unknown_precision_is_refused(span_checkpoint, cache_dir):
    with pytest.raises(ValueError, match="precision"):
        load_model(str(span_checkpoint), precision="fp8", cache_dir=cache_dir)


def test_precision_modes_reach_the_compiled_model(span_checkpoint, cache_dir):
    """f32 and int8 run f32 activations; bf16 runs bf16 wherever the CPU has it."""
    import openvino as ov

    from gliner_server.runtime.openvino_encoder import cpu_supports_bf16

    hints = {p: loaded(span_checkpoint, p, cache_dir).model.encoder.compiled.get_property(
        "INFERENCE_PRECISION_HINT") for p in ("f32", "bf16", "int8")}
    assert hints["f32"] == ov.Type.f32 and hints["int8"] == ov.Type.f32
    assert hints["bf16"] == (ov.Type.bf16 if cpu_supports_bf16(ov.Core()) else ov.Type.f32)


def test_int8_ptq_is_calibrated_on_library_inputs_and_quantizes_activations(span_checkpoint, tmp_path):
    """int8-ptq: NNCF quantize on encoder inputs captured from the library; its own IR cache key."""
    import numpy as np
    from gliner2 import AutoExtractor

    from gliner_server.runtime.calibration import CALIBRATION_TEXTS, calibration_inputs
    from gliner_server.runtime.openvino_encoder import (PRECISIONS, OpenVINOEncoder, export_ir, ir_weights,
                                                        is_activation_quantized)

    assert "int8-ptq" in PRECISIONS
    assert len({ir_weights("f32"), ir_weights("int8"), ir_weights("int8-ptq")}) == 3
    assert ir_weights("bf16") == ir_weights("f32")
    model = AutoExtractor.from_pretrained(str(span_checkpoint)).eval()
    calibration = calibration_inputs(model, texts=CALIBRATION_TEXTS[:10])
    assert len(calibration) == 10 + 2  # every text at batch 1, then padded batches of 8
    assert all(ids.shape == mask.shape and ids.dtype == np.int64 for ids, mask in calibration)
    assert any((mask == 0).any() for _, mask in calibration)
    with pytest.raises(ValueError, match="calibration"):
        export_ir(model.encoder, tmp_path / "none" / "encoder.xml", "int8-ptq")
    exact, quantized = tmp_path / "f32" / "encoder.xml", tmp_path / "ptq" / "encoder.xml"
    export_ir(model.encoder, exact, "f32")
    export_ir(model.encoder, quantized, "int8-ptq", calibration=calibration)
    assert is_activation_quantized(quantized) and not is_activation_quantized(exact)
    with pytest.raises(RuntimeError, match="int8-ptq"):  # an fp32 IR under an int8-ptq key is refused
        OpenVINOEncoder(exact, "int8-ptq", cache_dir=None)
    ids, mask = calibration[0]
    want = OpenVINOEncoder(exact, "f32", cache_dir=None).run(ids, mask)
    got = OpenVINOEncoder(quantized, "int8-ptq", cache_dir=None).run(ids, mask)
    assert got.shape == want.shape
    assert 0 < np.linalg.norm(got - want) / np.linalg.norm(want) < 0.25


def test_int8_ptq_mode_loads_and_runs(span_checkpoint, cache_dir):
    import openvino as ov

    from gliner_server.runtime.openvino_encoder import cpu_supports_bf16, is_activation_quantized

    model = loaded(span_checkpoint, "int8-ptq", cache_dir)
    assert model.runtime == "lean" and model.model.bundle.precision == "int8-ptq"
    assert is_activation_quantized(model.model.bundle.path / "encoder.xml")
    hint = model.model.encoder.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert hint == (ov.Type.bf16 if cpu_supports_bf16(ov.Core()) else ov.Type.f32)
    got = served_entities(model, SEED_TEXT, LABELS, threshold=0.0, include_confidence=True)
    assert list(got["entities"]) == LABELS
    assert all(0.0 <= m["confidence"] <= 1.0 for ms in got["entities"].values() for m in ms)
    assert sum(map(len, got["entities"].values())) > 0


def test_a_compile_meeting_another_process_cache_entry_is_retried():
    """Replicas compiling one model at once can trip over each other's half-written cache blob."""
    from gliner_server.runtime.openvino_encoder import compile_cached

    class Core:
        def __init__(self, failures, message):
            self.failures, self.message, self.calls = failures, message, 0

        def compile_model(self, model, device, properties):
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError(self.message)
            return ("compiled", model, device)

    busy = Core(1, "filesystem error: cannot set permissions: No such file or directory [/c/compiled/1.blob]")
    assert compile_cached(busy, "m.xml", {}) == ("compiled", "m.xml", "CPU") and busy.calls == 2
    broken = Core(5, "Exception from src/plugins/intel_cpu: unsupported operation")
    with pytest.raises(RuntimeError, match="unsupported operation"):
        compile_cached(broken, "m.xml", {})
    assert broken.calls == 1  # other failures are not retried


def test_openvino_sends_no_telemetry_from_this_service():
    """OpenVINO's converter posts usage telemetry from a forked copy of the process unless opted out; offline those
    copies hang and outlive the server. Importing the service first leaves the converter its no-op stub."""
    import subprocess
    import sys

    code = ("import gliner_server, openvino, sys\n"
            "import openvino.tools.ovc.convert_impl as convert\n"
            "print(convert.tm.__name__, sys.modules.get('openvino_telemetry'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "None"]
