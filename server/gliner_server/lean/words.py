"""Word splitting before subword tokenization, ported from gliner2 2.1.0 `gliner2.processing.word_splitter`.

The library splits a text into words with a regex splitter, then tokenizes each
word on its own; word boundaries decide both the model input and the character
offsets of every span it returns, so the patterns below are the library's,
character for character. A splitter is called as the library calls its own:
``splitter(text, lower=True)`` yields ``(word, start, end)`` with exclusive-end
offsets into the original text, lower-casing only the yielded word (never the
text: Unicode case folding can change length and would shift offsets).

Which splitter a model uses is conversion-time data: a settings dict such as
``{"kind": "whitespace"}`` (see ``conversion.processor_settings``).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping

Word = tuple[str, int, int]
WordSplitter = Callable[..., Iterator[Word]]

# Code points that can hold a combining mark: planes 0-3 and plane 14 (tags, variation selectors). Planes
# 4-13 are unassigned in every Unicode version so far and planes 15-16 are private use (category Co), so
# scanning only these ranges finds the same marks as the library's scan of every code point, in a quarter of
# the time (the full scan took 0.25 s of every server's start-up; tests/test_lean_preprocess.py compares them).
MARK_PLANES = (range(0, 0x40000), range(0xE0000, 0xF0000))


def combining_marks(planes=MARK_PLANES) -> str:
    """Every combining mark (category M*) of this Python's Unicode database within ``planes``, in order."""
    return "".join(chr(code) for plane in planes for code in plane if unicodedata.category(chr(code))[0] == "M")


# As the library builds it: every combining mark of this Python's Unicode database, so a word keeps its
# diacritics whatever script it is in.
_COMBINING_MARKS = combining_marks()
_WORD = rf"[\w{_COMBINING_MARKS}\u200c\u200d]"


class WhitespaceTokenSplitter:
    """gliner2 2.1.0 `WhitespaceTokenSplitter`: URLs, e-mails, @handles, hyphen/underscore-joined words, else one
    non-space."""

    __slots__ = ()

    _PATTERN = re.compile(
        rf"""(?:https?://[^\s]+|www\.[^\s]+)
        |[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{{2,}}
        |@[a-z0-9_]+
        |{_WORD}+(?:[-_]{_WORD}+)*
        |\S""",
        re.VERBOSE | re.IGNORECASE,
    )

    def __call__(self, text: str, lower: bool = True) -> Iterator[Word]:
        for m in self._PATTERN.finditer(text):
            token = m.group()
            yield (token.lower() if lower else token), m.start(), m.end()


class CharLevelSplitter:
    """gliner2 2.1.0 `CharLevelSplitter`: ASCII word runs stay whole, every other non-space is a word (CJK)."""

    __slots__ = ()

    _PATTERN = re.compile(r"[A-Za-z0-9@._\-+]+|\S")

    def __call__(self, text: str, lower: bool = True) -> Iterator[Word]:
        for m in self._PATTERN.finditer(text):
            token = m.group()
            yield (token.lower() if lower else token), m.start(), m.end()


WORD_SPLITTERS = {
    "whitespace": WhitespaceTokenSplitter,
    "char": CharLevelSplitter,
}
DEFAULT_WORD_SPLITTER = "whitespace"


def word_splitter(settings: Mapping[str, str] | None = None) -> WordSplitter:
    """The splitter a settings dict names (gliner2 2.1.0 `resolve_word_splitter` for built-in names).

    ``None`` or a missing ``kind`` is the library's default (``"whitespace"``).
    Custom callables cannot travel through a settings file; conversion refuses them.
    """
    kind = (settings or {}).get("kind") or DEFAULT_WORD_SPLITTER
    try:
        return WORD_SPLITTERS[kind]()
    except KeyError:
        supported = ", ".join(repr(name) for name in sorted(WORD_SPLITTERS))
        raise ValueError(f"Unknown word_splitter {kind!r}. Supported names: {supported}.") from None


def iter_word_offsets(text: str, splitter: WordSplitter) -> Iterator[Word]:
    """gliner2 2.1.0 `chunking.iter_word_offsets`: original-case words and offsets (``lower=False``)."""
    yield from splitter(text, lower=False)
