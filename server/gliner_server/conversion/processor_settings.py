"""What the lean preprocessing needs from a gliner2 model's processor, read at conversion time.

``lean.preprocess.Preprocessor`` rebuilds the library's ``SchemaTransformer``
from two artefacts written here: a settings dict (JSON: special tokens, token
pooling, word splitter, unknown-token id, ...) and the processor's tokenizer,
with the special tokens the processor added, as a ``tokenizers`` JSON file.
This module may import torch/transformers/gliner2; the lean runtime never
imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

SETTINGS_FORMAT = 1


def _splitter_settings(splitter: Any) -> dict:
    """The lean settings naming the processor's word splitter; only the built-in ones can be reproduced."""
    from gliner2.processing.word_splitter import WORD_SPLITTERS

    for kind, cls in WORD_SPLITTERS.items():
        if type(splitter) is cls:
            return {"kind": kind}
    raise ValueError(f"the model's word splitter {type(splitter).__name__} is not a built-in one "
                     f"({', '.join(sorted(WORD_SPLITTERS))}); the lean runtime cannot reproduce it")


def processor_settings(model) -> dict:
    """JSON-serialisable settings of ``model.processor`` (and the model) for ``lean.preprocess.Preprocessor``."""
    processor = model.processor
    tokenizer = processor.tokenizer
    names = ("SEP_STRUCT", "SEP_TEXT", "P_TOKEN", "C_TOKEN", "E_TOKEN", "R_TOKEN", "L_TOKEN",
             "EXAMPLE_TOKEN", "OUTPUT_TOKEN", "DESC_TOKEN")
    return {
        "format": SETTINGS_FORMAT,
        "library": "gliner2 2.1.0",
        "architecture": getattr(model, "architecture", "span"),
        "token_pooling": processor.token_pooling,
        "word_splitter": _splitter_settings(processor.word_splitter),
        "special_tokens": {name: getattr(processor, name) for name in names},
        "unk_token_id": tokenizer.unk_token_id,
        "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
        "enable_records": bool(getattr(model, "enable_records", False)),
    }


def tokenizer_backend(tokenizer):
    """A fresh ``tokenizers.Tokenizer`` equal to the processor's (a fast tokenizer's backend, or a converted slow
    one)."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        from transformers.convert_slow_tokenizer import convert_slow_tokenizer

        backend = convert_slow_tokenizer(tokenizer)
        added = [token for _, token in sorted(tokenizer.added_tokens_decoder.items())]
        backend.add_special_tokens([t for t in added if t.special])
        backend.add_tokens([t for t in added if not t.special])
    # A copy, so that truncation/padding the transformers wrapper may have set on its
    # backend are not touched; the library's tokenize() runs with neither.
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    copy.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    return copy


def _probe_words(processor) -> list[str]:
    """Words whose tokenization must agree: markers, punctuation, unicode, marker-like and empty-piece text."""
    return [*processor.SPECIAL_TOKENS, "(", ")", ",", "|", "", " ", "apple", "Apple", "iphone", "15",
            "cupertino", "héllo", "naïve", "東京", "😀", "\u200b", "\t", "a [E] b", "[sep_text]",
            "entities: person [DESCRIPTION] person: a human", "über-cool", "$1199", "256gb", "e-mail@x.org"]


def check_tokenizer(tokenizer, backend) -> None:
    """Raise if ``backend`` does not tokenize like the processor's ``tokenizer`` (pieces and ids)."""
    from gliner2.processor import SchemaTransformer

    if backend.get_vocab(with_added_tokens=True) != tokenizer.get_vocab():
        raise ValueError("exported tokenizer's vocabulary differs from the processor's")
    for word in _probe_words(SchemaTransformer):
        want = tokenizer.tokenize(word)
        got = backend.encode(word, add_special_tokens=False).tokens
        if got != want or tokenizer.convert_tokens_to_ids(want) != [
                i if i is not None else tokenizer.unk_token_id for i in map(backend.token_to_id, got)]:
            raise ValueError(f"exported tokenizer differs from the processor's on {word!r}: {got} != {want}")


def export_tokenizer(model, path: Path) -> Path:
    """Write the processor's tokenizer (special tokens included) as a ``tokenizers`` JSON file at ``path``."""
    tokenizer = model.processor.tokenizer
    backend = tokenizer_backend(tokenizer)
    check_tokenizer(tokenizer, backend)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backend.save(str(path))
    return path
