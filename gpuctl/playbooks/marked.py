"""YAML read with the line of every field, so a validation error can say `file:line: field: message`.

`yaml.safe_load` forgets where things came from. Here the document is composed
into nodes (which carry marks) and turned into plain data by hand, recording
the line of each mapping key and list item; pydantic's error locations are then
walked through that data to find the line. Along the way it refuses what a
hand-written definition should never rely on: duplicate keys (PyYAML silently
keeps the last), merge keys, recursive aliases and alias bombs. Keys stay the
text the author typed (`on:` is the string "on", not YAML 1.1's True).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gpuctl.errors import FileProblem

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

# An alias may repeat a node; this many values in one file means an alias bomb, not a playbook.
MAX_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Marked:
    """Plain data (dicts, lists, scalars) plus the 1-based line of every path in it."""

    data: Any
    lines: Mapping[Path_, int] = field(default_factory=dict)


class _Invalid(Exception):
    def __init__(self, line: int, where: str, message: str) -> None:
        super().__init__(message)
        self.line, self.where, self.message = line, where, message


def _compose(text: str) -> Marked:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return Marked(None, {(): 1})
    lines: dict[Path_, int] = {(): node.start_mark.line + 1}
    budget = [MAX_VALUES]
    data = _plain(node, (), lines, set(), budget, SafeConstructor())
    return Marked(data, lines)


def _plain(
    node: Node, path: Path_, lines: dict[Path_, int], active: set[int], budget: list[int], scalars: SafeConstructor
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Invalid(node.start_mark.line + 1, _dotted(path), f"more than {MAX_VALUES} values (an alias bomb?)")
    if id(node) in active:
        raise _Invalid(node.start_mark.line + 1, _dotted(path), "a recursive alias")
    if isinstance(node, ScalarNode):
        return scalars.construct_object(node)
    active.add(id(node))
    try:
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                items.append(_plain(item, (*path, index), lines, active, budget, scalars))
            return items
        assert isinstance(node, MappingNode)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise _Invalid(line, _dotted(path), "merge keys (<<) are not supported: write the fields out")
            if not isinstance(key_node, ScalarNode):
                raise _Invalid(line, _dotted(path), "a key must be plain text")
            key = str(key_node.value)
            if key in out:
                raise _Invalid(line, _dotted((*path, key)), f"duplicate key {key!r} (first at line {lines[(*path, key)]})")
            lines[(*path, key)] = line
            out[key] = _plain(value_node, (*path, key), lines, active, budget, scalars)
        return out
    finally:
        active.discard(id(node))


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def read(text: str, source: str) -> Marked:
    """The document in `text` with its lines; a YAML problem raises `ProblemsFound` naming `source` and the line."""
    try:
        return _compose(text)
    except _Invalid as e:
        raise ProblemsFound([FileProblem(source, e.line, e.where, e.message)]) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        message = " ".join(str(part) for part in (e.context, e.problem) if part) or "not valid YAML"
        raise ProblemsFound([FileProblem(source, line, "", f"not valid YAML: {message}")]) from e
    except yaml.YAMLError as e:
        raise ProblemsFound([FileProblem(source, 1, "", f"not valid YAML: {e}")]) from e


class ProblemsFound(Exception):
    """Internal: what `read` and `validate` found; callers turn it into their GpuctlError with the problems."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


def validate(model: type[M], doc: Marked, source: str) -> M:
    """`model` validated from the document; every pydantic error becomes a FileProblem with its line."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        raise ProblemsFound([problem(err, doc, source) for err in e.errors(include_url=False)]) from e


def problem(err: Mapping[str, Any], doc: Marked, source: str) -> FileProblem:
    """One pydantic error located in the document.

    Error locations mix data keys with names pydantic adds (a union's tag, a
    validator's name); walking only the parts that exist in the data finds the
    deepest real node. A missing field is reported at its parent's line.
    """
    node: Any = doc.data
    path: Path_ = ()
    shown: list[str | int] = []
    loc = tuple(err.get("loc", ()))
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node, path = node[part], (*path, part)
            shown.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node, path = node[part], (*path, part)
            shown.append(part)
        elif i == len(loc) - 1 and err.get("type") == "missing" and isinstance(part, str):
            shown.append(part)  # a missing field: named, found at its parent
    line = doc.lines.get(path, 1)
    return FileProblem(source, line, _dotted(shown), _message(err))


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    text = str(err.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if isinstance(value, str | int | float | bool) and kind not in ("value_error", "assertion_error"):
        text += f" (got {value!r})"
    return text


def load(model: type[M], path: Path, error: Callable[..., Exception], what: str, *, hint: str) -> tuple[M, Marked]:
    """`model` from the YAML file at `path`, with its lines; `error` naming `what`, the file, line and field
    (or why it cannot be read, with `hint`) otherwise."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"cannot read {what} {source}: {e.strerror or e}", hint=hint) from e
    try:
        doc = read(text, source)
        return validate(model, doc, source), doc
    except ProblemsFound as e:
        raise_as(error, f"invalid {what} {source}", e.problems)


def raise_as(error: Callable[..., Exception], what: str, problems: Sequence[FileProblem], *, hint: str | None = None) -> NoReturn:
    """Raise `error` (PlaybookError, PolicyError) carrying `problems`, its message listing every one."""
    listed = "; ".join(str(p) for p in problems)
    raise error(f"{what}: {listed}", hint=hint, problems=problems)
