"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme): the bytes a record's hash covers.

A standard form rather than our own, so anyone can re-hash an exported record
with an off-the-shelf JCS library (Go, Java, JavaScript, Python, ...):

- objects: members sorted by their names' UTF-16 code units, no whitespace;
- strings: UTF-8, escaping only `"`, `\\`, and control characters (as \\b \\f \\n
  \\r \\t or \\u00xx, lower-case hex); every other character is written as is;
- numbers: ECMAScript's Number-to-string (the shortest digits that round-trip,
  `1e+21`, `1.5e-7`, `-0` as `0`); NaN and infinities are refused;
- true, false, null as such.

Integers outside ±(2^53 - 1) are refused when a record is written (see
`check_integers`): a JCS tool reads numbers as IEEE doubles and would print
them differently. Store such numbers as strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1

# The json module's string encoder for ensure_ascii=False escapes exactly what RFC 8785 escapes, the same way.
_string = json.encoder.encode_basestring


def canonical_json(value: Any) -> str:
    """The RFC 8785 text of a JSON value (dict/list/tuple/str/int/float/bool/None)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def canonical_bytes(value: Any) -> bytes:
    """`canonical_json` as UTF-8; a string holding a lone surrogate is refused (it is not Unicode)."""
    try:
        return canonical_json(value).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid Unicode text: {e.object[e.start : e.end]!r}") from e


def check_integers(value: Any, *, where: str = "payload") -> None:
    """Refuse integers a JCS tool cannot read exactly (beyond ±(2^53 - 1))."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{where}: integer {value} is beyond ±(2^53 - 1); store it as a string")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_integers(item, where=f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_integers(item, where=f"{where}[{i}]")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__} ({key!r})")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__} ({value!r:.60})")


def _utf16_order(key: str) -> bytes:
    try:
        return key.encode("utf-16-be")  # big-endian bytes compare like UTF-16 code units
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid Unicode text in an object key: {key!r}") from e


def es_number(x: float) -> str:
    """ECMAScript's Number::toString for a finite double (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a JSON number (NaN and infinities have no JSON form)")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires; only the layout differs.
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exp_text) if exp_text else 0)  # value = 0.<digits> x 10^point
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exponent = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + exponent
