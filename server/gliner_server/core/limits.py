"""Input limits: what one request may ask of the service, enforced before any model work.

Every limit is configurable (the configuration file's ``limits:`` section and
``gliner2-serve`` flags) and every violation is a :class:`ServiceError` in the
provider's error shape: 413 ``PAYLOAD_TOO_LARGE`` for sizes (text, schema, a
pass of the model), 400 ``INVALID_REQUEST`` for counts (texts, schema items).
Request bodies are bounded before they reach the server too: by Envoy
(``--max-request-bytes``, 413) and by the gRPC server's message size limit.

Texts longer than the model's window (``window_words`` words, as the gliner2
library counts them) are never silently truncated: with ``long_text: chunk``
they are processed in overlapping windows, as the library's ``*_long`` methods
do, and merged with global offsets (the answer says how many chunks); with
``long_text: reject`` they get a 413 that says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ErrorKind, ServiceError
from .schema import ExtractionSchema

LongTextPolicy = Literal["chunk", "reject"]


@dataclass(frozen=True)
class Window:
    """The model's window in the library's words, and the overlap of neighbouring chunks."""

    words: int = 384      # the library's chunk_size default
    overlap: int = 64     # its chunk_overlap default


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 100_000        # characters per text
    max_texts: int = 64                  # texts per request (/gliner-2 lists, BatchExtract)
    max_schema_items: int = 256          # entity types + tasks + labels + structures + fields + choices + relations
    max_schema_chars: int = 32_768       # characters of every name, label, choice and description
    long_text: LongTextPolicy = "chunk"  # texts over window_words: chunk, or reject with 413
    window_words: int = 384              # the model's window, in the library's words (its *_long default)
    window_overlap_words: int = 64       # words repeated between neighbouring chunks
    max_pass_tokens: int = 2048          # subword tokens of one text or chunk plus its schema prompt

    @property
    def window(self) -> Window:
        return Window(self.window_words, self.window_overlap_words)

    def __post_init__(self):
        for name in ("max_text_chars", "max_texts", "max_schema_items", "max_schema_chars", "window_words",
                     "max_pass_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"limits: {name} must be at least 1")
        if not 0 <= self.window_overlap_words < self.window_words:
            raise ValueError("limits: window_overlap_words must be at least 0 and less than window_words")
        if self.long_text not in ("chunk", "reject"):
            raise ValueError("limits: long_text is 'chunk' or 'reject'")


def schema_size(schema: ExtractionSchema) -> tuple[int, int]:
    """(items, characters) of a schema: what its prompt is made of."""
    items = chars = 0

    def add(*texts):
        nonlocal items, chars
        for text in texts:
            if text:
                items += 1
                chars += len(text)

    for entity in schema.entities:
        add(entity.name)
        chars += len(entity.description or "")
    for task in schema.classifications:
        add(task.name, *task.labels)
        chars += sum(len(k) + len(v) for k, v in (task.label_descriptions or {}).items())
    for structure in schema.structures:
        add(structure.name)
        for field in structure.fields:
            add(field.name, *(field.choices or ()))
            chars += len(field.description or "")
    for relation in schema.relations:
        add(relation.name)
        chars += len(relation.description or "")
    return items, chars


def check_schema(schema: ExtractionSchema, limits: Limits) -> None:
    items, chars = schema_size(schema)
    if items > limits.max_schema_items:
        raise ServiceError.invalid(f"The schema has {items} items (entity types, tasks, labels, structures, fields, "
                                   f"choices and relations); at most {limits.max_schema_items} are accepted",
                                   field="schema")
    if chars > limits.max_schema_chars:
        raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, f"The schema has {chars} characters of names, labels and "
                           f"descriptions; at most {limits.max_schema_chars} are accepted", field="schema")
