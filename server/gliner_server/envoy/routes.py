"""Envoy route matchers derived from the ``google.api.http`` rules.

The transcoder only knows "this path+method maps to an RPC" or not: with
``reject_unknown_method`` a ``GET /gliner-2`` would be a 404. To answer 405
instead, every transcoded path template gets a route that matches the path but
*not* its allowed methods (``invert_match`` on ``:method``) and answers with a
``direct_response``; those routes run before the catch-all route.
"""
from __future__ import annotations

import re
from collections import defaultdict

_REGEX_META = set("\\.+*?()|[]{}^$")


def _escape(literal: str) -> str:
    return "".join("\\" + c if c in _REGEX_META else c for c in literal)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside ``{...}``."""
    parts, depth, current = [], 0, []
    for c in text:
        depth += c == "{"
        depth -= c == "}"
        if c == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _segments_regex(segments: str) -> str:
    out = []
    for seg in _split_top(segments, "/"):
        if seg == "*":
            out.append("[^/]+")
        elif seg == "**":
            out.append(".*")
        elif seg.startswith("{") and seg.endswith("}"):
            inner = seg[1:-1]
            out.append(_segments_regex(inner.split("=", 1)[1]) if "=" in inner else "[^/]+")
        else:
            out.append(_escape(seg))
    return "/".join(out)


def is_literal(template: str) -> bool:
    return not any(c in template for c in "{*")


def template_regex(template: str) -> str:
    """RE2 regex (full match) for a ``google.api.http`` path template.

    ``/v1/{name=items/*}:cancel`` -> ``/v1/items/[^/]+:cancel``. ``**`` matches
    across segments; a trailing ``:verb`` after the last segment is literal.
    """
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    segments = _split_top(template[1:], "/")
    last = _split_top(segments[-1], ":")
    verb = ""
    if len(last) > 1:
        segments[-1], verb = ":".join(last[:-1]), last[-1]
    regex = "/" + _segments_regex("/".join(segments))
    return regex + (":" + _escape(verb) if verb else "")


def method_not_allowed_routes(
    rules: list[tuple[str, str]], per_filter_config: dict
) -> list[dict]:
    """Routes answering 405 for a known path template with a wrong method.

    Literal paths come first and allow the union of the methods of every
    template that matches them (so ``POST /v1/items/special`` is not refused
    because ``GET /v1/items/{id}`` also matches it). Two overlapping
    *variable* templates with different methods are not reconciled.
    """
    methods: dict[str, set[str]] = defaultdict(set)
    for method, template in rules:
        methods[template].add(method)
    regexes = {t: re.compile(template_regex(t)) for t in methods}
    literal = sorted(t for t in methods if is_literal(t))
    variable = sorted(t for t in methods if not is_literal(t))

    routes = []
    for template in literal + variable:
        if is_literal(template):
            allowed = set().union(*(m for t, m in methods.items() if regexes[t].fullmatch(template)))
            match: dict = {"path": template}
        else:
            allowed = set().union(
                *(m for t, m in methods.items() if regexes[t].pattern == regexes[template].pattern)
            )
            match = {"safe_regex": {"regex": regexes[template].pattern}}
        allow = ", ".join(sorted(allowed))
        match["headers"] = [{
            "name": ":method",
            "string_match": {"safe_regex": {"regex": "|".join(sorted(allowed))}},
            "invert_match": True,
        }]
        routes.append({
            "name": f"method_not_allowed {template}",
            "match": match,
            "direct_response": {
                "status": 405,
                "body": {"inline_string": f"Method not allowed for {template}; use {allow}"},
            },
            "response_headers_to_add": [{
                "header": {"key": "allow", "value": allow},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }],
            "typed_per_filter_config": per_filter_config,
        })
    return routes
