"""Parameter values from users: each type, each error, and a fuzz test that nothing else gets through."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.errors import ConfigError, ParameterError
from gpuctl.playbooks.loader import Catalog, parse_playbook
from gpuctl.playbooks.params import parse_assignments, validate_params
from gpuctl.playbooks.spec import (
    NAME_SYNTAX,
    BoolParam,
    DurationParam,
    EnumParam,
    FloatParam,
    IntParam,
    NameParam,
    Playbook,
    StringParam,
    spell_duration,
)
from tests.unit.playbooks.conftest import MINIMAL

EVERY_TYPE = MINIMAL.replace(
    "target:",
    """\
  ratio: {type: float, min: 0.5, max: 2.5, help: a ratio}
  wait: {type: duration, default: 30m, min: 1m, max: 2h, help: how long}
  dry: {type: bool, default: true, help: only look}
  mode: {type: enum, choices: [staged, immediate], default: staged, help: how}
  label: {type: string, pattern: '[a-z]{1,8}', help: a word}
  namespace: {type: namespace, help: where}
  node: {type: node, help: which node}
  pool: {type: pool, help: which pool}
  profile: {type: mig_profile, help: which MIG config}
  queue: {type: object_name, help: which ClusterQueue}
  target: {type: node, required: true, help: the target node}
  flavor: {type: object_name, requires: [queue], help: a flavor}
exactly_one_of: [[namespace, pool]]
target:""",
)


@pytest.fixture(scope="module")
def every_type() -> Playbook:
    return parse_playbook(EVERY_TYPE, "demo.yaml")


def ok(playbook: Playbook, **given: str) -> dict[str, Any]:
    return validate_params(playbook, {"target": "gpu-node-1", "namespace": "team-a", **given})


def rejected(playbook: Playbook, **given: str) -> str:
    with pytest.raises(ParameterError) as err:
        ok(playbook, **given)
    assert isinstance(err.value, ConfigError)  # CLI exit 2, like any bad argument
    return str(err.value)


def test_defaults_fill_in_and_optional_ones_are_none(every_type: Playbook) -> None:
    values = ok(every_type)
    assert values == {
        "count": 2, "ratio": None, "wait": 1800.0, "dry": True, "mode": "staged", "label": None,
        "namespace": "team-a", "node": None, "pool": None, "profile": None, "queue": None, "target": "gpu-node-1",
        "flavor": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("count", "5", 5), ("count", " 1 ", 1), ("count", "+3", 3),
        ("ratio", "0.5", 0.5), ("ratio", "2.5", 2.5), ("ratio", "1e0", 1.0), ("ratio", ".75", 0.75),
        ("wait", "1m", 60.0), ("wait", "1h30m", 5400.0), ("wait", "90", 90.0), ("wait", "2h", 7200.0),
        ("dry", "false", False), ("dry", "YES", True), ("dry", "0", False), ("dry", "on", True),
        ("mode", "immediate", "immediate"),
        ("label", "abc", "abc"),
        ("node", "gpu-a100-07.zone-b", "gpu-a100-07.zone-b"),
        ("profile", "all-1g.10gb", "all-1g.10gb"), ("profile", "all_balanced", "all_balanced"),
        ("queue", "team-a-cq", "team-a-cq"),
    ],
)  # fmt: skip
def test_each_type_accepts(every_type: Playbook, key: str, text: str, value: object) -> None:
    assert ok(every_type, **{key: text})[key] == value


def test_pool_is_a_label_value(every_type: Playbook) -> None:
    values = validate_params(every_type, {"target": "n1", "pool": "A100_80GB.spot"})
    assert values["pool"] == "A100_80GB.spot" and values["namespace"] is None


@pytest.mark.parametrize(
    ("key", "text", "says"),
    [
        ("count", "ten", "count='ten' is not a whole number (expected int 1..5)"),
        ("count", "2.0", "is not a whole number"),
        ("count", "١", "is not a whole number"),  # int() would take Arabic-Indic digits
        ("count", "1_000", "is not a whole number"),
        ("count", "0", "count='0' is below the minimum 1 (expected int 1..5)"),
        ("count", "6", "is above the maximum 5"),
        ("ratio", "nan", "is not a number"),
        ("ratio", "inf", "is not a number"),
        ("ratio", "1e999", "is not a finite number"),
        ("ratio", "3", "is above the maximum 2.5 (expected float 0.5..2.5)"),
        ("wait", "2 hours", "wait='2 hours' is not a duration like 30m, 1h30m or 90s (expected duration 1m..2h)"),
        ("wait", "10s", "is below the minimum 1m"),
        ("wait", "3h", "is above the maximum 2h"),
        ("wait", "-5m", "is not a duration"),
        ("wait", "nan", "is not a duration"),
        ("dry", "maybe", "dry='maybe' is not true or false (expected true or false)"),
        ("mode", "Staged", "mode='Staged' is not a choice (expected one of staged, immediate)"),
        ("label", "ABC", "does not match [a-z]{1,8}"),
        ("label", "abc\n", "contains control characters"),
        ("namespace", "Team-A", "namespace='Team-A' is not a valid name (expected a namespace (DNS label"),
        ("namespace", "a" * 64, "is not a valid name"),
        ("node", "-bad", "is not a valid name (expected a node name"),
        ("profile", "all 1g", "is not a valid name (expected a MIG config name"),
        ("queue", "team_a", "is not a valid name"),
    ],
)
def test_each_type_rejects(every_type: Playbook, key: str, text: str, says: str) -> None:
    assert says in rejected(every_type, **{key: text})


def test_unknown_key_lists_the_parameters(every_type: Playbook) -> None:
    message = rejected(every_type, colour="red")
    assert "demo has no parameter 'colour' (parameters: count, ratio, wait, dry, mode, label," in message
    assert "gpuctl playbook show demo" in message


def test_missing_required_says_what_it_is(every_type: Playbook) -> None:
    with pytest.raises(ParameterError) as err:
        validate_params(every_type, {"namespace": "team-a"})
    assert "demo needs parameter target: a node name (DNS subdomain: a-z, 0-9, '-', '.') — the target node" in str(err.value)


def test_groups_and_requires(every_type: Playbook) -> None:
    assert "give exactly one of namespace, pool (got namespace, pool)" in rejected(every_type, pool="p")
    with pytest.raises(ParameterError, match=r"give exactly one of namespace, pool \(got none\)"):
        validate_params(every_type, {"target": "n"})
    assert "flavor needs queue as well" in rejected(every_type, flavor="gpu")
    assert ok(every_type, flavor="gpu", queue="cq")["flavor"] == "gpu"


def test_all_problems_are_reported_together(every_type: Playbook) -> None:
    message = rejected(every_type, count="x", mode="y", colour="z")
    assert message.count(";") >= 2 and "count='x'" in message and "mode='y'" in message and "'colour'" in message


def test_long_values_are_cut_in_messages(every_type: Playbook) -> None:
    assert len(rejected(every_type, label="x" * 10_000)) < 400


def test_non_text_values_are_refused(every_type: Playbook) -> None:
    with pytest.raises(ParameterError, match="count must be given as text, not int"):
        validate_params(every_type, {"target": "n", "namespace": "a", "count": 3})
    with pytest.raises(ParameterError, match="has no parameter '7'"):
        validate_params(every_type, {"target": "n", "namespace": "a", 7: "3"})


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b = x=y", "c="]) == {"a": "1", "b": " x=y", "c": ""}
    for bad, says in ((["novalue"], "is not key=value"), (["=1"], "is not key=value"), (["a=1", "a=2"], "given twice")):
        with pytest.raises(ParameterError, match=says):
            parse_assignments(bad)


def test_shipped_defaults_validate(catalog: Catalog) -> None:
    """Each shipped playbook with only its required parameters (and one of each group) gets its defaults."""
    needed = {
        "reclaim-idle-gpus": {},
        "relabel-mig": {"node": "gpu-node-1", "profile": "all-1g.10gb"},
        "scale-pool": {"pool": "a100", "replicas": "3"},
        "adjust-quota": {"namespace": "team-a", "quota": "8"},
    }
    for playbook in catalog:
        values = validate_params(playbook, needed[playbook.name])
        for name, param in playbook.parameters.items():
            default = getattr(param, "default", None)
            if name not in needed[playbook.name]:
                assert values[name] == default
    reclaim = validate_params(catalog.get("reclaim-idle-gpus"), {})
    assert (reclaim["idle_for"], reclaim["mode"], reclaim["grace"], reclaim["max_pods"]) == (7200, "staged", 1800, 10)
    mig = {"cluster_queue": "team-a-cq", "quota": "4", "resource": "nvidia.com/mig-1g.10gb"}
    assert validate_params(catalog.get("adjust-quota"), mig)["resource"] == "nvidia.com/mig-1g.10gb"


def test_shipped_playbooks_refuse_what_the_issue_forbids(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus")
    assert "is above the maximum 50" in _message(reclaim, {"max_pods": "51"})
    assert "is below the minimum 30m" in _message(reclaim, {"idle_for": "10m"})
    assert "give exactly one of replicas, gpu_limit" in _message(catalog.get("scale-pool"), {"pool": "p"})
    quota = catalog.get("adjust-quota")
    assert "give exactly one of namespace, cluster_queue" in _message(quota, {"quota": "1"})
    assert "flavor needs cluster_queue" in _message(quota, {"namespace": "a", "quota": "1", "flavor": "f"})
    assert "does not match" in _message(quota, {"namespace": "a", "quota": "1", "resource": "cpu"})


def _message(playbook: Playbook, given: dict[str, str]) -> str:
    with pytest.raises(ParameterError) as err:
        validate_params(playbook, given)
    return str(err.value)


def test_spell_duration() -> None:
    assert [spell_duration(s) for s in (0, 59, 90, 3600, 5400, 86400, 90061, 0.25)] == [
        "0s", "59s", "1m30s", "1h", "1h30m", "1d", "1d1h1m1s", "0.25s",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Fuzz: arbitrary keys and values raise nothing but ParameterError, and whatever is accepted
# has the declared type and satisfies the declared bounds, pattern or choices.
# ---------------------------------------------------------------------------------------------


def _satisfies(param: object, value: object) -> bool:
    match param:
        case IntParam():
            return type(value) is int and _within(param, value)
        case FloatParam():
            return type(value) is float and math.isfinite(value) and _within(param, value)
        case DurationParam():
            return type(value) is float and math.isfinite(value) and value >= 0 and _within(param, value)
        case BoolParam():
            return type(value) is bool
        case EnumParam():
            return value in param.choices
        case StringParam():
            return isinstance(value, str) and value.isprintable() and re.fullmatch(param.pattern, value) is not None
        case NameParam():
            syntax, longest, _ = NAME_SYNTAX[param.type]
            return isinstance(value, str) and len(value) <= longest and re.fullmatch(syntax, value, re.ASCII) is not None
    raise AssertionError(f"unknown parameter type {param!r}")


def _within(param: Any, value: Any) -> bool:
    return (param.min is None or value >= param.min) and (param.max is None or value <= param.max)


_NAMES = sorted(parse_playbook(EVERY_TYPE, "demo.yaml").parameters)
_plausible = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds(lambda n, u: f"{n}{u}", st.integers(-5, 10**6), st.sampled_from(["", "s", "m", "h", "d", "ms", "x", " h"])),
    st.sampled_from(["true", "False", "staged", "immediate", "all-1g.10gb", "team-a", "abc", "", " ", "\x00", "١٢"]),
    st.from_regex(r"[a-z0-9][-a-z0-9.]{0,70}", fullmatch=True),
    st.text(max_size=80),
)


_FUZZED = parse_playbook(EVERY_TYPE, "demo.yaml")
# Values that fit, so that the accepting path is exercised as often as the refusing one.
_FITTING = {
    "count": ["1", "5"], "ratio": ["0.5", "2.5"], "wait": ["1m", "2h", "1h1m1s"], "dry": ["true", "Off"],
    "mode": ["staged", "immediate"], "label": ["abcdefgh"], "namespace": ["team-a"], "node": ["n-1.x"],
    "pool": ["A100_x"], "profile": ["all-1g.10gb"], "queue": ["cq"], "target": ["n2"], "flavor": ["f"],
}  # fmt: skip


@st.composite
def _entries(draw: st.DrawFn) -> tuple[str, str]:
    key = draw(st.one_of(*[st.sampled_from(_NAMES)] * 3, st.text(max_size=20)))
    fitting = _FITTING.get(key)
    return key, draw(st.one_of(*[st.sampled_from(fitting)] * 2, _plausible) if fitting else _plausible)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fuzzed=st.lists(_entries(), max_size=4).map(dict),
)
def test_fuzz_only_parameter_errors_and_valid_values(fuzzed: dict[str, str]) -> None:
    playbook, given_ = _FUZZED, {"target": "n1", "namespace": "a", **fuzzed}
    try:
        values = validate_params(playbook, given_)
    except ParameterError:
        return
    assert set(values) == set(playbook.parameters)
    for name, value in values.items():
        param = playbook.parameters[name]
        if value is None:
            assert not param.required and name not in given_
        else:
            assert _satisfies(param, value), (name, value)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.text(max_size=30), max_size=6))
def test_fuzz_assignments_only_parameter_errors(items: list[str]) -> None:
    try:
        parsed = parse_assignments(items)
    except ParameterError:
        return
    assert all(key and key == key.strip() for key in parsed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["max_pods", "idle_for", "grace", "mode", "namespace", "pool", "node"]), text=_plausible)
def test_fuzz_reclaim_values_stay_within_guardrails(catalog: Catalog, key: str, text: str) -> None:
    playbook = catalog.get("reclaim-idle-gpus")
    try:
        values = validate_params(playbook, {key: text})
    except ParameterError:
        return
    rails = playbook.guardrails
    assert rails.max_pods is not None and rails.min_pod_age is not None
    assert 1 <= values["max_pods"] <= rails.max_pods  # type: ignore[operator]
    assert values["idle_for"] >= rails.min_pod_age  # type: ignore[operator]
    assert _satisfies(playbook.parameters[key], values[key])
