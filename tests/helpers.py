"""Comparison helpers shared by the tests."""
from __future__ import annotations

import json
import math
import time

SCORE_TOLERANCE = 1e-4  # OpenVINO f32 vs PyTorch drift is ~1e-6


def jsonable(value):
    """What a JSON round trip makes of a library result (tuples become lists)."""
    return json.loads(json.dumps(value))


def assert_match(actual, expected, path="$"):
    """Equal structure, equal strings and ints; floats equal within SCORE_TOLERANCE."""
    actual, expected = jsonable(actual), jsonable(expected)
    _match(actual, expected, path)


def _match(a, e, path):
    if isinstance(e, float) or isinstance(a, float):
        assert isinstance(a, (int, float)) and isinstance(e, (int, float)), f"{path}: {a!r} != {e!r}"
        assert math.isclose(a, e, abs_tol=SCORE_TOLERANCE), f"{path}: {a} != {e}"
    elif isinstance(e, dict):
        assert isinstance(a, dict), f"{path}: expected an object, got {a!r}"
        assert list(a) == list(e), f"{path}: keys {list(a)} != {list(e)}"
        for key in e:
            _match(a[key], e[key], f"{path}.{key}")
    elif isinstance(e, list):
        assert isinstance(a, list) and len(a) == len(e), f"{path}: {a!r} != {e!r}"
        for i, (x, y) in enumerate(zip(a, e)):
            _match(x, y, f"{path}[{i}]")
    else:
        assert a == e, f"{path}: {a!r} != {e!r}"


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
