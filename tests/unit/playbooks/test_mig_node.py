"""relabel-mig's pure decisions about a node: how many GPUs it has, what a profile does to it, and whether
the MIG manager's answer is in."""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.migparted import DEFAULT_CONFIG_MAP, MIG_CONFIG_LABEL, MIG_MODELS, MIG_STATE_LABEL, MigPartedConfig
from gpuctl.playbooks.mig_node import (
    LAYOUT_FIELD,
    MIG_MANAGER_DEPLOY_LABEL,
    NodeFacts,
    describe_layout,
    expected_resources,
    judge,
    label_change,
    not_relabelable,
    physical_gpus,
    previous_resources,
    reconfigures,
    relabel_target,
    stuck_report,
)
from gpuctl.playbooks.plan import Step, TargetRef
from testbed.gpu_operator import default_mig_parted_config, mig_node_object

H100 = MIG_MODELS["NVIDIA-H100-80GB-HBM3"]
A100_40 = MIG_MODELS["NVIDIA-A100-SXM4-40GB"]
A100_80 = MIG_MODELS["NVIDIA-A100-SXM4-80GB"]
DEFAULT = MigPartedConfig.parse(default_mig_parted_config(), source=DEFAULT_CONFIG_MAP)
SOURCE = f"gpu-operator/{DEFAULT_CONFIG_MAP}"


def facts(product: str, *, labels: dict[str, str] | None = None, **kwargs: Any) -> NodeFacts:
    obj = mig_node_object("n1", product=product, **kwargs)
    obj["metadata"]["labels"].update(labels or {})
    return NodeFacts.read({**obj, "metadata": {**obj["metadata"], "uid": "u1", "resourceVersion": "7"}})


def test_node_facts_read_what_the_gpu_operator_shows() -> None:
    node = facts(H100.product, gpus=8, strategy="single", applied="all-1g.10gb")
    assert (node.name, node.uid, node.resource_version) == ("n1", "u1", "7")
    assert (node.mig_config, node.mig_state, node.strategy) == ("all-1g.10gb", "success", "single")
    assert node.product == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert node.capacity == node.allocatable == {"nvidia.com/gpu": 56}
    assert not node.unschedulable
    assert not_relabelable(node) is None


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ({"nvidia.com/mig.capable": "false"}, "not MIG-capable"),
        ({MIG_MANAGER_DEPLOY_LABEL: "false"}, "no MIG manager runs on node n1"),
        ({"nvidia.com/gpu.product": "Tesla-T4"}, "does not know the MIG profiles of Tesla-T4"),
    ],
)
def test_nodes_the_mig_manager_cannot_act_on(labels: dict[str, str], why: str) -> None:
    assert why in (not_relabelable(facts(H100.product, gpus=2, labels=labels)) or "")


@pytest.mark.parametrize(
    ("product", "gpus", "strategy", "applied"),
    [
        (H100.product, 8, "single", "all-1g.10gb"),  # gpu.count says 56: instances, not GPUs
        (H100.product, 2, "single", "all-7g.80gb"),
        (A100_80.product, 4, "mixed", "all-balanced"),
        (A100_40.product, 6, "single", "all-disabled"),
        (H100.product, 3, "mixed", None),  # MIG never configured
    ],
)
def test_physical_gpus_from_what_the_applied_config_advertises(
    product: str, gpus: int, strategy: Any, applied: str | None
) -> None:
    node = facts(product, gpus=gpus, strategy=strategy, applied=applied)
    assert physical_gpus(node, DEFAULT, MIG_MODELS[product], strategy) == gpus


def test_physical_gpus_unknown_when_nothing_says_it() -> None:
    # The applied config failed: 16 instances of a 2-per-GPU profile could be 8 GPUs, or 16 of a 1-per-GPU one...
    node = facts(A100_40.product, gpus=8, strategy="single", applied="all-3g.20gb", labels={MIG_STATE_LABEL: "failed"})
    assert physical_gpus(node, DEFAULT, A100_40, "single") is None
    # ...unless gpu.count counts GPUs (no -MIG- product under the single strategy).
    whole = facts(A100_40.product, gpus=8, strategy="single", applied="all-disabled", labels={MIG_STATE_LABEL: "failed"})
    assert physical_gpus(whole, DEFAULT, A100_40, "single") == 8


def test_target_of_a_profile_lists_label_layout_and_resources() -> None:
    node = facts(H100.product, gpus=8, strategy="single", applied="all-disabled")
    target = relabel_target(node, DEFAULT, SOURCE, "all-1g.10gb", H100, "single")
    assert not isinstance(target, str)
    assert (target.gpus, dict(target.before), dict(target.after)) == (8, {"nvidia.com/gpu": 8}, {"nvidia.com/gpu": 56})
    step = Step(
        action="set_node_label", target=TargetRef(kind="Node", name="n1"), changes=target.changes("all-disabled", "all-1g.10gb")
    )
    assert [(c.field, c.before, c.after) for c in step.changes] == [
        (f"labels[{MIG_CONFIG_LABEL}]", "all-disabled", "all-1g.10gb"),
        (LAYOUT_FIELD, "8× MIG off", "8× 7×1g.10gb"),
        ("status.allocatable[nvidia.com/gpu]", 8, 56),
    ]
    assert label_change(step).after == "all-1g.10gb"
    assert expected_resources(step) == {"nvidia.com/gpu": 56}
    assert previous_resources(step) == {"nvidia.com/gpu": 8}
    assert reconfigures(step)


def test_mixed_target_swaps_resource_names() -> None:
    node = facts(A100_80.product, gpus=4, strategy="mixed", applied="all-balanced")
    target = relabel_target(node, DEFAULT, SOURCE, "all-7g.80gb", A100_80, "mixed")
    assert not isinstance(target, str)
    assert dict(target.before) == {"nvidia.com/mig-1g.10gb": 8, "nvidia.com/mig-2g.20gb": 4, "nvidia.com/mig-3g.40gb": 4}
    assert dict(target.after) == {"nvidia.com/mig-7g.80gb": 4}
    assert describe_layout(target.current) == "4× 2×1g.10gb+2g.20gb+3g.40gb"
    assert describe_layout(target.layout) == "4× 7g.80gb"


@pytest.mark.parametrize(
    ("product", "strategy", "profile", "why"),
    [
        (
            A100_40.product,
            "single",
            "all-1g.20gb",
            "all-1g.20gb does not fit node n1's GPUs: GPU 0: MIG profile 1g.20gb does not exist",
        ),
        (H100.product, "single", "all-balanced", "under the single MIG strategy all-balanced advertises no GPUs"),
        (H100.product, "single", "all-enabled", "under the single MIG strategy all-enabled advertises no GPUs"),
    ],
)
def test_profiles_a_node_cannot_take(product: str, strategy: Any, profile: str, why: str) -> None:
    node = facts(product, gpus=4, strategy=strategy, applied="all-disabled")
    target = relabel_target(node, DEFAULT, SOURCE, profile, MIG_MODELS[product], strategy)
    assert isinstance(target, str) and why in target


def test_a_profile_without_an_entry_for_the_gpu_model() -> None:
    config = MigPartedConfig.parse(
        "version: v1\nmig-configs:\n  all-disabled: [{devices: all, mig-enabled: false}]\n"
        "  h200-only: [{device-filter: '0x233510DE', devices: all, mig-enabled: true, mig-devices: {1g.18gb: 7}}]\n",
        source="custom",
    )
    node = facts(H100.product, gpus=2, strategy="mixed", applied="all-disabled")
    target = relabel_target(node, config, "custom", "h200-only", H100, "mixed")
    assert target == "h200-only in custom has no entry for node n1's GPUs (NVIDIA-H100-80GB-HBM3, device id 0x233010DE)"


def test_the_same_resources_do_not_hide_a_reconfiguration() -> None:
    node = facts(H100.product, gpus=2, strategy="single", applied="all-disabled")
    target = relabel_target(node, DEFAULT, SOURCE, "all-7g.80gb", H100, "single")
    assert not isinstance(target, str) and target.before == target.after == {"nvidia.com/gpu": 2}
    step = Step(
        action="set_node_label", target=TargetRef(kind="Node", name="n1"), changes=target.changes("all-disabled", "all-7g.80gb")
    )
    assert reconfigures(step)


def _state(node: NodeFacts, config: str, state: str | None, resources: dict[str, int]) -> NodeFacts:
    labels = {**node.labels, MIG_CONFIG_LABEL: config, MIG_STATE_LABEL: state or ""}
    return NodeFacts(node.name, node.uid, node.resource_version, labels, node.unschedulable, resources, resources)


BASE = facts(H100.product, gpus=2, strategy="single", applied="all-disabled")
WANT = {"nvidia.com/gpu": 14}


@pytest.mark.parametrize(
    ("state", "resources", "start", "seen", "reconfig", "verdict"),
    [
        ("success", {"nvidia.com/gpu": 2}, "success", {"success"}, True, None),  # the old config's success
        ("pending", {}, "success", {"success", "pending"}, True, None),
        ("success", WANT, "success", {"success", "pending"}, True, "success"),
        ("success", {"nvidia.com/gpu": 2}, "success", {"success", "pending"}, True, None),  # device plugin not there yet
        ("success", WANT, "success", {"success"}, True, None),  # same resources, never pending: not yet
        ("success", WANT, "success", {"success"}, False, "success"),  # nothing to change on the GPUs
        ("success", WANT, "failed", {"failed", "success"}, True, "success"),
        ("failed", {"nvidia.com/gpu": 2}, "failed", {"failed"}, True, None),  # failed left from before
        ("failed", {"nvidia.com/gpu": 2}, "failed", {"failed", "pending"}, True, "failed"),
        ("failed", {"nvidia.com/gpu": 2}, "success", {"success", "failed"}, True, "failed"),
    ],
)
def test_judge_the_mig_managers_answer(state: str, resources: dict[str, int], start: str, seen: set[str | None], reconfig: bool,
                                       verdict: str | None) -> None:  # fmt: skip
    node = _state(BASE, "all-1g.10gb", state, resources)
    assert judge(node, profile="all-1g.10gb", expected=WANT, reconfigures=reconfig, start_state=start, seen=seen) == verdict


def test_judge_sees_someone_else_relabel() -> None:
    node = _state(BASE, "all-3g.40gb", "pending", {})
    assert (
        judge(node, profile="all-1g.10gb", expected=WANT, reconfigures=True, start_state="success", seen={"pending"}) == "changed"
    )


def test_stuck_reports_say_what_to_check() -> None:
    pending = stuck_report(
        _state(BASE, "p", "pending", {}), profile="p", expected=WANT, waited="after 900 s", namespace="gpu-operator"
    )
    assert pending.startswith(f"{MIG_STATE_LABEL} on n1 is still pending after 900 s (profile p); the node stays cordoned: ")
    assert "kubectl -n gpu-operator get pods -l app=nvidia-mig-manager" in pending and "nvidia-operator-validator" in pending
    plugin = stuck_report(_state(BASE, "p", "success", {}), profile="p", expected=WANT, waited="after 9 s", namespace=None)
    assert "advertises no GPUs, not nvidia.com/gpu=14" in plugin and "device plugin" in plugin
    quiet = stuck_report(_state(BASE, "p", "success", WANT), profile="p", expected=WANT, waited="after 9 s", namespace=None)
    assert "without reconfiguring" in quiet


def test_describe_layout_groups_identical_gpus() -> None:
    assert describe_layout((None, None)) == "2× MIG off"
    assert describe_layout(({"3g.40gb": 2}, {"3g.40gb": 2}, None, {})) == "2× 2×3g.40gb, 1× MIG off, 1× MIG on, empty"
