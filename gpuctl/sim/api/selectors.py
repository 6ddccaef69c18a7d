"""labelSelector and fieldSelector query parameters, evaluated as the API server does (the forms gpuctl sends and kubectl's)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gpuctl.sim.api.status import JSON, bad_request

Match = Callable[[JSON], bool]
_SET = re.compile(r"^\s*(!?)([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([^\s,]*))?\s*$")


def _terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t for t in (*terms, current) if t.strip()]


def _label_test(
    negated: str, key: str, set_op: str | None, values: str | None, op: str | None, value: str | None
) -> Callable[[dict[str, str]], bool]:
    if set_op:
        members = {v.strip() for v in (values or "").split(",") if v.strip()}
        if set_op == "in":
            return lambda labels: labels.get(key) in members
        return lambda labels: labels.get(key) not in members
    if op:
        equal = op != "!="
        return lambda labels: (labels.get(key) == value) == equal
    exists = not negated
    return lambda labels: (key in labels) == exists


def label_match(text: str | None) -> Match:
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _terms(text or ""):
        found = _SET.match(term)
        if found is None:
            raise bad_request(f"unable to parse requirement: {term!r}")
        tests.append(_label_test(*found.groups()))
    return lambda obj: all(test((obj.get("metadata") or {}).get("labels") or {}) for test in tests)


def _field_test(path: str, op: str, value: str) -> Match:
    equal = op != "!="
    return lambda obj: (_field(obj, path) == value) == equal


def field_match(text: str | None) -> Match:
    tests: list[Match] = []
    for term in _terms(text or ""):
        found = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if found is None:
            raise bad_request(f"invalid field selector: {term!r}")
        tests.append(_field_test(*found.groups()))
    return lambda obj: all(test(obj) for test in tests)


def _field(obj: JSON, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)
