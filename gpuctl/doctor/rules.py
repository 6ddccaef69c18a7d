"""Prometheus rules the doctor reads, and the one expression mistake it looks for.

Rules come from Prometheus's API (`/api/v1/rules`: what is actually loaded) and
from rule files named on the command line: plain Prometheus rule files
(`groups:`) or PrometheusRule objects (`spec.groups`), several YAML documents
per file allowed.

`divides_used_by_free(expr)` finds `FB_USED / FB_FREE`: a memory ratio that
passes 0.92 at about 48 % full. The right one is `FB_USED / (FB_USED + FB_FREE)`
(or over the total). PromQL is not parsed in full: the two operands of each `/`
are read (a metric with its matchers and range, a parenthesised group, a
function or aggregation call), which is what memory ratios are written with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpuctl.errors import ConfigError

USED = re.compile(r"FB_USED")
FREE = re.compile(r"FB_FREE")
WHOLE = re.compile(r"FB_TOTAL|FB_CAPACITY")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = frozenset({"by", "without"})
_MATCHING = frozenset({"on", "ignoring", "group_left", "group_right", "bool"})
_CLOSE = {"(": ")", "{": "}", "[": "]"}
_OPEN = {v: k for k, v in _CLOSE.items()}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # the alert or recorded series name
    expr: str
    group: str
    source: str  # Prometheus's URL, or the rule file's path


def parse_api_rules(data: Any, *, source: str) -> list[Rule]:
    """The rules in /api/v1/rules `data` (`{"groups": [{"name", "rules": [{"name", "query"}]}]}`)."""
    out: list[Rule] = []
    for group in _items(data, "groups"):
        for rule in _items(group, "rules"):
            name, query = rule.get("name"), rule.get("query")
            if isinstance(name, str) and isinstance(query, str):
                out.append(Rule(name=name, expr=query, group=str(group.get("name", "")), source=source))
    return out


def read_rule_file(path: Path) -> list[Rule]:
    """The rules of a Prometheus rule file or of PrometheusRule objects. Raises ConfigError for a file
    that cannot be read or holds no rule groups."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read rule file {path}: {e}", hint="pass a Prometheus rule file or PrometheusRule") from e
    out: list[Rule] = []
    for document in documents:
        groups = document.get("spec", document) if isinstance(document, Mapping) else None
        if not isinstance(groups, Mapping) or not isinstance(groups.get("groups"), list):
            raise ConfigError(f"{path}: a document has no `groups:` list", hint="pass a Prometheus rule file or PrometheusRule")
        for group in _items(groups, "groups"):
            for rule in _items(group, "rules"):
                name, expr = rule.get("alert") or rule.get("record"), rule.get("expr")
                if isinstance(name, str) and expr is not None:
                    out.append(Rule(name=name, expr=str(expr), group=str(group.get("name", "")), source=str(path)))
    return out


def _items(parent: Any, key: str) -> Iterator[Mapping[str, Any]]:
    values = parent.get(key) if isinstance(parent, Mapping) else None
    for value in values if isinstance(values, list) else ():
        if isinstance(value, Mapping):
            yield value


def divides_used_by_free(expr: str) -> bool:
    """True when some `/` has framebuffer-used on its left and framebuffer-free, without used or the
    total, on its right."""
    text = _blank(expr)
    for at, char in enumerate(text):
        if char != "/":
            continue
        left, right = _left_operand(text, at), _right_operand(text, at + 1)
        if USED.search(left) and FREE.search(right) and not (USED.search(right) or WHOLE.search(right)):
            return True
    return False


def _blank(expr: str) -> str:
    """The expression with comments and string literals blanked (same length), so a '/' or a bracket
    inside a label value never counts."""
    expr = _COMMENT.sub(lambda m: " " * len(m.group()), expr)
    return _STRING.sub(lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)


def _left_operand(text: str, end: int) -> str:
    """The operand ending just before `end`: a word with its {...}/[...] suffixes, or a (...) group with
    the function or `agg by (...)` around it."""
    i = _skip_space_back(text, end)
    start = i
    while start > 0 and text[start - 1] in ")}]":
        start = _word_back(text, _match_back(text, start - 1))
        word, word_start = _word_before(text, start)
        if word in _GROUPING:  # `sum(x) by (a)`: the grouping follows the call it belongs to
            start = _skip_space_back(text, word_start)
            continue
        break
    else:
        start = _word_back(text, start)
    word, word_start = _word_before(text, start)
    if word in _GROUPING:  # `sum by (a) (x)`: the call's name sits before its grouping
        before = _skip_space_back(text, word_start)
        if before > 0 and text[before - 1] == ")":
            start = _word_back(text, _match_back(text, before - 1))
    return text[start:i]


def _right_operand(text: str, start: int) -> str:
    i = _skip_space(text, start)
    while (word := _word_at(text, i)) in _MATCHING:  # on(a) group_left(b) ...: vector matching, not the operand
        i = _skip_space(text, i + len(word))
        if i < len(text) and text[i] == "(":
            i = _skip_space(text, _match(text, i))
    begin = i
    i += len(_word_at(text, i))
    while True:
        j = _skip_space(text, i)
        if j < len(text) and text[j] in "({[":
            i = _match(text, j)
            continue
        word = _word_at(text, j)
        if word in _GROUPING:
            i = j + len(word)
            continue
        return text[begin:i]


def _match(text: str, at: int) -> int:
    """Index just past the bracket closing the one at `at` (or the end of the text)."""
    depth, i = 0, at
    while i < len(text):
        if text[i] in _CLOSE:
            depth += 1
        elif text[i] in _OPEN:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _match_back(text: str, at: int) -> int:
    """Index of the bracket opening the one closing at `at` (or 0)."""
    depth, i = 0, at
    while i >= 0:
        if text[i] in _OPEN:
            depth += 1
        elif text[i] in _CLOSE:
            depth -= 1
            if depth == 0:
                return i
        i -= 1
    return 0


def _word_at(text: str, at: int) -> str:
    match = _WORD.match(text, at)
    return match.group() if match else ""


def _word_back(text: str, end: int) -> int:
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_:"):
        start -= 1
    return start


def _word_before(text: str, end: int) -> tuple[str, int]:
    """The word just before `end` (spaces skipped) and where it starts."""
    end = _skip_space_back(text, end)
    start = _word_back(text, end)
    return text[start:end], start


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _skip_space_back(text: str, i: int) -> int:
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return i
