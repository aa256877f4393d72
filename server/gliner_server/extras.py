"""Which optional parts of the installation are present, told without importing them.

A serving process must not import PyTorch, transformers or gliner2 (the lean
runtime; ``tests/test_lean_serving.py`` fails on any attempt, even a caught
one), so features that need the ``convert`` extra ask the installed
distributions' metadata first.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed(*distributions: str) -> bool:
    """Whether these distributions are installed (read from their metadata: nothing is imported)."""
    try:
        for name in distributions:
            version(name)
    except PackageNotFoundError:
        return False
    return True
