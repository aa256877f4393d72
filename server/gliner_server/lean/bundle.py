"""A converted model bundle on disk: recognising one and reading its manifest (see :mod:`..conversion.bundle`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "gliner2-openvino-bundle/1"
# Part of every bundle's manifest and of the cache key of bundles converted on first use:
# bumped whenever the converter writes something different from the same checkpoint.
CONVERTER_REVISION = 1
REQUIRED_FILES = ("encoder.xml", "encoder.bin", "heads.npz", "tokenizer.json", "processor.json")


class BundleError(RuntimeError):
    """Not a usable bundle (missing files, another format, a precision it does not carry)."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def ir_weights(self) -> str:
        return self.manifest["ir_weights"]

    @property
    def source(self) -> str:
        return self.manifest.get("source", {}).get("model_id", str(self.path))

    def serves(self, precision: str) -> bool:
        """Whether this bundle's encoder IR runs ``precision`` (f32 and bf16 share the fp32 IR)."""
        from .openvino_compile import ir_weights

        return ir_weights(precision) == self.ir_weights


def is_bundle(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def open_bundle(path: Path) -> Bundle:
    """The bundle at ``path``, checked: its format and that every file the runtime reads is there."""
    path = Path(path).expanduser().resolve()
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"{path} has no readable {MANIFEST}: {error}") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is a {manifest.get('format')!r} bundle; this server reads {BUNDLE_FORMAT!r} "
                          "(convert the checkpoint again with this version's gliner2-convert)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise BundleError(f"bundle {path} is incomplete: {', '.join(missing)} missing")
    return Bundle(path=path, manifest=manifest)
