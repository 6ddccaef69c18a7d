"""RFC 8785 canonical JSON: the bytes every record hash covers must never drift."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuctl.audit.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_json, check_integers, es_number

# RFC 8785 appendix B: IEEE 754 bit patterns and their ECMAScript forms.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS)
def test_numbers_as_ecmascript_prints_them(bits: str, text: str) -> None:
    assert es_number(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


def test_rfc_8785_example_object() -> None:
    # RFC 8785 section 3.2.2's example, input with whitespace and unsorted members.
    source = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert canonical_json(source) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_members_sort_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it by code point.
    keys = {
        "\u20ac": "Euro",
        "\r": "CR",
        "\ufb33": "Hebrew",
        "1": "One",
        "\U0001f600": "Smiley",
        "\u0080": "Control",
        "\u00f6": "o",
    }
    order = [k for k, _ in json.loads(canonical_json(keys), object_pairs_hook=list)]
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_refuses_what_json_cannot_say() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not a JSON number"):
            canonical_json({"x": bad})
    with pytest.raises(ValueError, match="not valid Unicode"):
        canonical_bytes({"x": "lone \ud800 surrogate"})
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical_json({1: "x"})
    with pytest.raises(TypeError, match="not a JSON value"):
        canonical_json({"x": b"bytes"})


def test_integers_beyond_double_precision_are_refused() -> None:
    check_integers({"ok": [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, True]})
    with pytest.raises(ValueError, match=r"payload\.a\[1\]: integer 9007199254740992 .* store it as a string"):
        check_integers({"a": [0, MAX_SAFE_INTEGER + 1]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_matches_sorted_compact_json_for_ascii_keys_and_integers(value: object) -> None:
    """For what gpuctl writes (ASCII member names, integers), any sorted compact JSON writer agrees:
    the format can be checked with everyday tools (jq -cS, json.dumps)."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip(x: float) -> None:
    assert float(es_number(x)) == x
