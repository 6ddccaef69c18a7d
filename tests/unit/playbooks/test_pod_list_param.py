"""The `pod_list` parameter type (reclaim-idle-gpus' `pods`): what it accepts, how it normalizes, each refusal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import ParameterError
from gpuctl.playbooks.authorize import param_scopes
from gpuctl.playbooks.loader import Catalog, parse_playbook
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.spec import PodListParam, pod_keys
from tests.unit.playbooks.conftest import MINIMAL

PODS = parse_playbook(
    MINIMAL.replace("target:", "  pods: {type: pod_list, max_items: 3, help: which pods}\ntarget:"), "demo.yaml"
)


def refused(text: str) -> str:
    with pytest.raises(ParameterError) as err:
        validate_params(PODS, {"pods": text})
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("team-a/train-1", "team-a/train-1"),
        ("team-a/train-1,team-b/x.y-2", "team-a/train-1,team-b/x.y-2"),
        (" team-a/a , team-a/b ", "team-a/a,team-a/b"),  # spaces around commas
        ("team-a/a team-b/b", "team-a/a,team-b/b"),  # spaces alone separate too
        ("team-b/b,team-a/a", "team-b/b,team-a/a"),  # the order given is kept
    ],
)
def test_accepts_and_normalizes(text: str, value: str) -> None:
    assert validate_params(PODS, {"pods": text})["pods"] == value
    assert pod_keys(value) == tuple(value.split(","))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "pods='' names no pod (expected up to 3 pods as namespace/name, separated by commas)"),
        (" , ", "names no pod"),
        ("train-1", "has 'train-1', which is not namespace/name"),
        ("team-a/", "has 'team-a/', which is not namespace/name"),
        ("/train-1", "which is not namespace/name"),
        ("Team-A/train-1", "has 'Team-A/train-1', which is not namespace/name"),
        ("team-a/train_1", "which is not namespace/name"),
        ("team-a/b/c", "which is not namespace/name"),
        ("team-a/a,team-a/a", "names team-a/a twice"),
        ("team-a/a,team-b/b,team-a/a", "names team-a/a twice"),
        ("a/1,a/2,a/3,a/4", "names 4 pods, more than 3"),
        ("team-a/a\x00", "which is not namespace/name"),
        (f"{'a' * 64}/x", "which is not namespace/name"),
    ],
)
def test_refuses_with_a_specific_reason(text: str, says: str) -> None:
    assert says in refused(text)


def test_the_shipped_reclaim_takes_pods_and_its_namespaces_are_scopes(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus")
    param = reclaim.parameters["pods"]
    assert isinstance(param, PodListParam) and "pods" in reclaim.target.by
    args = validate_params(reclaim, {"pods": "team-a/x,team-b/y,team-a/z"})
    assert args["pods"] == "team-a/x,team-b/y,team-a/z" and args["namespace"] is None
    assert param_scopes(reclaim, args) == [Scope(kind="namespace", name="team-a"), Scope(kind="namespace", name="team-b")]
    assert param_scopes(reclaim, {**args, "pods": "not a pod list"}) == []  # unvalidated text names no scope
    with pytest.raises(ParameterError, match="names 51 pods, more than 50"):
        validate_params(reclaim, {"pods": ",".join(f"a/p{i}" for i in range(51))})


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.from_regex(r"[a-z0-9/, .-]{0,60}", fullmatch=True)))
def test_fuzz_only_parameter_errors_and_well_formed_values(text: str) -> None:
    try:
        value = validate_params(PODS, {"pods": text})["pods"]
    except ParameterError:
        return
    assert isinstance(value, str)
    keys = pod_keys(value)
    assert 1 <= len(keys) <= 3 and len(set(keys)) == len(keys) and ",".join(keys) == value
