"""Label selectors match exactly as apimachinery's do."""

from __future__ import annotations

import pytest

from gpuctl.state.selectors import InvalidSelector, parse_selector


def matches(selector: dict[str, object] | None, labels: dict[str, str]) -> bool:
    parsed = parse_selector(selector)
    return parsed is not None and parsed.matches(labels)


def test_match_labels_are_equalities_and_all_must_hold() -> None:
    sel = {"matchLabels": {"app": "vllm", "tier": "gpu"}}
    assert matches(sel, {"app": "vllm", "tier": "gpu", "extra": "x"})
    assert not matches(sel, {"app": "vllm"})
    assert not matches(sel, {"app": "vllm", "tier": "cpu"})


@pytest.mark.parametrize(
    ("operator", "values", "labels", "expected"),
    [
        ("In", ["a", "b"], {"k": "a"}, True),
        ("In", ["a", "b"], {"k": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"k": "b"}, True),
        ("NotIn", ["a"], {"k": "a"}, False),
        ("NotIn", ["a"], {}, True),  # absent: not in the set
        ("Exists", [], {"k": ""}, True),
        ("Exists", [], {}, False),
        ("DoesNotExist", [], {}, True),
        ("DoesNotExist", [], {"k": "a"}, False),
    ],
)
def test_expressions(operator: str, values: list[str], labels: dict[str, str], expected: bool) -> None:
    assert matches({"matchExpressions": [{"key": "k", "operator": operator, "values": values}]}, labels) is expected


def test_labels_and_expressions_together_and_empty_and_missing() -> None:
    sel = {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}
    assert matches(sel, {"app": "x"}) and not matches(sel, {"app": "y"})
    empty = parse_selector({})
    assert empty is not None and not empty.requirements and empty.matches({}) and empty.matches({"a": "b"})
    assert parse_selector(None) is None
    mixed = {
        "matchLabels": {"b": "2"},
        "matchExpressions": [
            {"key": "a", "operator": "Exists"},
            {"key": "c", "operator": "DoesNotExist"},
            {"key": "d", "operator": "In", "values": ["y", "x"]},
        ],
    }
    assert str(parse_selector(mixed)) == "a,b=2,!c,d in (x,y)"  # as kubectl prints it


@pytest.mark.parametrize(
    "expression",
    [
        {"key": "k", "operator": "In"},  # no values
        {"key": "k", "operator": "NotIn", "values": []},
        {"key": "k", "operator": "Exists", "values": ["a"]},
        {"key": "k", "operator": "DoesNotExist", "values": ["a"]},
        {"key": "k", "operator": "in", "values": ["a"]},  # operators are case-sensitive
        {"operator": "Exists"},
    ],
)
def test_selectors_apimachinery_refuses_are_errors(expression: dict[str, object]) -> None:
    with pytest.raises(InvalidSelector):
        parse_selector({"matchExpressions": [expression]})
