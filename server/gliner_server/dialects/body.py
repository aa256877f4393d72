"""Reading the JSON bodies of the REST dialects: decoding and typed optional fields."""
from __future__ import annotations

import json
from typing import Any

from ..core.engine import threshold_or_default
from ..errors import ServiceError

# JSON Schema (for the OpenAPI description) of the optional fields several dialects read alike:
# the output options (threshold(), optional_flag()) and the history's provenance of a call.
OUTPUT_PROPERTIES = {
    "threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "include_confidence": {"type": "boolean"},
    "include_spans": {"type": "boolean"},
}
PROVENANCE_PROPERTIES = {
    "project_id": {"type": "string"},
    "training_job_id": {"type": "string"},
    "privacy_mode": {"type": "boolean"},
}


MAX_JSON_DEPTH = 64   # arrays and objects within each other; no request needs more than a handful


def decode_json(raw: bytes) -> Any:
    """The body as JSON values, keeping object key order (it orders schemas); at most MAX_JSON_DEPTH deep."""
    if not raw or not raw.strip():
        raise ServiceError.invalid("The request body must be a JSON object")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise ServiceError.invalid("The request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as error:
        raise ServiceError.invalid(f"Malformed JSON body: {error.msg} at line {error.lineno} "
                                   f"column {error.colno}") from None
    except RecursionError:   # the decoder's own recursion bound: far deeper than MAX_JSON_DEPTH
        raise _too_deep() from None
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """400 when arrays/objects nest more than ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise _too_deep(limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _too_deep(limit: int = MAX_JSON_DEPTH) -> ServiceError:
    return ServiceError.invalid(f"The request body nests arrays and objects more than {limit} levels deep")


def decode_object(raw: bytes) -> dict:
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise ServiceError.invalid("The request body must be a JSON object")
    return body


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ServiceError.invalid(f"{name} must be a string", field=name)
    return value


def optional_flag(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ServiceError.invalid(f"{name} must be true or false", field=name)
    return value


def threshold(body: dict) -> float:
    """The body's threshold, type-checked; the engine checks the 0–1 range for every route."""
    value = body.get("threshold")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ServiceError.invalid("threshold must be a number between 0 and 1", field="threshold")
    return threshold_or_default(value)
