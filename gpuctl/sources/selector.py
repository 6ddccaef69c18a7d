"""The metrics selector: label matchers added to every PromQL query gpuctl sends.

Behind a Prometheus, Thanos or Mimir that holds several clusters, the DCGM
series of every cluster look alike; `--metrics-selector 'cluster="prod-a"'`
keeps gpuctl to one. The text is PromQL's own matcher list (with or without
the braces): `name op "value"` joined by commas, op one of `=`, `!=`, `=~`,
`!~`, values in double, single or back quotes.

It is parsed once, at start-up, so a typo is a configuration error naming the
problem instead of a 400 from Prometheus on every refresh. Regular expressions
are checked with Python's `re`, which accepts what PromQL (RE2) accepts for
the usual label patterns; Prometheus anchors them, and so does `matches`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OP = re.compile(r"=~|!~|!=|=")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'

    def matches(self, labels: Mapping[str, object]) -> bool:
        """PromQL semantics: a missing label is the empty string; regexes match the whole value."""
        raw = labels.get(self.name)
        value = raw if isinstance(raw, str) else ""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True, slots=True)
class Selector:
    matchers: tuple[Matcher, ...] = ()

    def promql(self) -> str:
        """The matchers as they go inside a PromQL selector's braces (no braces); '' when empty."""
        return ",".join(m.promql() for m in self.matchers)

    def matches(self, labels: Mapping[str, object]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def __bool__(self) -> bool:
        return bool(self.matchers)


NO_SELECTOR = Selector()


def parse_selector(text: str) -> Selector:
    """Parse `cluster="prod-a",env=~"gpu-.*"` (braces optional). Raises ValueError saying what is wrong."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while True:
        pos = _skip_space(body, pos)
        if pos == len(body):
            break
        name = _NAME.match(body, pos)
        if name is None:
            raise ValueError(f"expected a label name at {_where(body, pos)}")
        pos = _skip_space(body, name.end())
        op = _OP.match(body, pos)
        if op is None:
            raise ValueError(f"expected =, !=, =~ or !~ after {name.group()!r}")
        value, pos = _quoted(body, _skip_space(body, op.end()))
        matcher = Matcher(name.group(), op.group(), value)  # type: ignore[arg-type]  # _OP matches only Op values
        if matcher.name == "__name__":
            raise ValueError("__name__ cannot be selected: gpuctl chooses the DCGM metric names itself")
        if matcher.op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"{matcher.name}{matcher.op}: {value!r} is not a valid regular expression ({e})") from None
        matchers.append(matcher)
        pos = _skip_space(body, pos)
        if pos == len(body):
            break
        if body[pos] != ",":
            raise ValueError(f"expected ',' between matchers at {_where(body, pos)}")
        pos += 1
    if not matchers:
        raise ValueError('expected at least one label matcher, e.g. cluster="prod-a"')
    return Selector(tuple(matchers))


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _where(text: str, pos: int) -> str:
    return f"{text[pos:pos + 20]!r}" if pos < len(text) else "the end"


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The string value starting at `pos` and the position after its closing quote."""
    quote = text[pos] if pos < len(text) else ""
    if quote not in ('"', "'", "`"):
        raise ValueError(f"expected a quoted value at {_where(text, pos)}")
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\" and quote != "`":  # back quotes are raw, as in PromQL
            escaped = text[i + 1] if i + 1 < len(text) else ""
            if escaped not in _ESCAPES:
                allowed = "\\\\ \\\" \\' \\n \\t \\r"
                raise ValueError(f"unknown escape \\{escaped} in {text[pos:i + 2]!r} (allowed: {allowed})")
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(c)
        i += 1
    raise ValueError(f"unterminated string starting at {_where(text, pos)}")
