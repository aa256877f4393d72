"""Where API keys come from: --api-key flags, a key file, and the environment."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_KEYS = "GLINER2_API_KEYS"          # comma- or newline-separated keys
ENV_KEY_FILE = "GLINER2_API_KEY_FILE"  # a file with one key per line


def _split(text: str) -> list[str]:
    return [k.strip() for k in text.replace(",", "\n").splitlines()
            if k.strip() and not k.strip().startswith("#")]


def collect_api_keys(flags: Iterable[str] = (), key_file: str | None = None,
                     environ: dict | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    keys = [k for k in flags if k]
    for path in filter(None, (key_file, environ.get(ENV_KEY_FILE))):
        keys += _split(Path(path).read_text())
    keys += _split(environ.get(ENV_KEYS, ""))
    return list(dict.fromkeys(keys))
