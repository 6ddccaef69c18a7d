"""The MIG manager simulator against the real API server: each transition the
relabel-mig playbook relies on, observed through a watch on the node."""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.migparted import MIG_CONFIG_LABEL, MIG_STATE_LABEL, node_config_map
from testbed.fleet_loader import wait_nodes_ready
from testbed.gpu_operator import OPERAND_DEPLOY_LABELS, OPERATOR_NAMESPACE, PAUSED, mig_config_map, mig_node_object
from testbed.informer import History, history
from testbed.kube import RestClient, apply_objects
from testbed.mig_manager import MigManagerSim
from testbed.objects import unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

H100 = "NVIDIA-H100-80GB-HBM3"
A100_40GB = "NVIDIA-A100-SXM4-40GB"
A100_80GB = "NVIDIA-A100-SXM4-80GB"


async def _node(admin: RestClient, **kwargs: Any) -> str:
    name = unique("mig")
    await apply_objects(admin, [mig_node_object(name, **kwargs)])
    # kwok's node-initialize stage writes the whole status, allocatable included, as it read it: let it be
    # done before the simulator changes the GPUs (as test_relabel_mig's nodes do).
    await wait_nodes_ready(admin, {name})
    return name


async def _relabel(admin: RestClient, node: str, labels: dict[str, str]) -> None:
    response = await admin.patch("Node", node, {"metadata": {"labels": labels}})
    assert response.status == 200, response.body


async def _settled(recorded: History, *states: str) -> list[str | None]:
    """Wait until the state label went through exactly `states` (after its value at the start)."""
    return await poll(
        lambda: recorded.label(MIG_STATE_LABEL)[1:],
        lambda seen: len(seen) >= len(states),
        timeout_s=20,
        what=f"mig.config.state to go {' → '.join(states)}",
    )


def _gpu_resources(node: dict[str, Any], field: str) -> dict[str, str]:
    return {k: v for k, v in node["status"][field].items() if k.startswith(("nvidia.com/gpu", "nvidia.com/mig-"))}


def _labels(node: dict[str, Any], prefix: str) -> dict[str, str]:
    return {k: v for k, v in node["metadata"]["labels"].items() if k.startswith(prefix)}


async def test_single_strategy_goes_pending_then_success_and_advertises_the_instances(
    admin: RestClient, mig_manager: MigManagerSim
) -> None:
    node = await _node(admin, product=H100, gpus=8, strategy="single", applied="all-disabled")
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-1g.10gb"})
        assert await _settled(recorded, "pending", "success") == ["pending", "success"]

    while_pending = [v for v in recorded.versions if v["metadata"]["labels"].get(MIG_STATE_LABEL) == "pending"]
    paused = [v for v in while_pending if v["metadata"]["labels"].get(OPERAND_DEPLOY_LABELS[0]) == PAUSED]
    assert paused, "operands were never paused while pending"
    assert any(_gpu_resources(v, "allocatable") == {"nvidia.com/gpu": "0"} for v in paused)

    after = recorded.versions[-1]
    assert _gpu_resources(after, "capacity") == {"nvidia.com/gpu": "56"}
    assert _gpu_resources(after, "allocatable") == {"nvidia.com/gpu": "56"}
    labels = after["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert labels["nvidia.com/gpu.count"] == "56"
    assert labels["nvidia.com/gpu.slices.gi"] == "1"
    assert labels["nvidia.com/mig.strategy"] == "single"
    assert all(labels[label] == "true" for label in OPERAND_DEPLOY_LABELS)


async def test_mixed_strategy_swaps_mig_resources_and_labels(admin: RestClient, mig_manager: MigManagerSim) -> None:
    node = await _node(admin, product=A100_80GB, gpus=4, strategy="mixed", applied="all-balanced")
    before = (await admin.get("Node", node)).body
    assert _gpu_resources(before, "capacity") == {
        "nvidia.com/gpu": "0",
        "nvidia.com/mig-1g.10gb": "8",
        "nvidia.com/mig-2g.20gb": "4",
        "nvidia.com/mig-3g.40gb": "4",
    }
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-7g.80gb"})
        assert await _settled(recorded, "pending", "success") == ["pending", "success"]

    after = recorded.versions[-1]
    assert _gpu_resources(after, "capacity") == {"nvidia.com/gpu": "0", "nvidia.com/mig-7g.80gb": "4"}
    assert _gpu_resources(after, "allocatable") == {"nvidia.com/gpu": "0", "nvidia.com/mig-7g.80gb": "4"}
    assert _labels(after, "nvidia.com/mig-") == {
        "nvidia.com/mig-7g.80gb.count": "4",
        "nvidia.com/mig-7g.80gb.memory": "80896",
        "nvidia.com/mig-7g.80gb.product": "NVIDIA-A100-SXM4-80GB-MIG-7g.80gb",
        "nvidia.com/mig-7g.80gb.replicas": "1",
        "nvidia.com/mig-7g.80gb.sharing-strategy": "none",
        "nvidia.com/mig-7g.80gb.slices.gi": "7",
        "nvidia.com/mig-7g.80gb.slices.ci": "7",
    }
    assert after["metadata"]["labels"]["nvidia.com/gpu.product"] == A100_80GB  # mixed keeps the full-GPU name


async def test_an_unknown_config_fails_without_going_pending(admin: RestClient, mig_manager: MigManagerSim) -> None:
    node = await _node(admin, product=H100, gpus=2, strategy="single", applied="all-disabled")
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-9g.99gb"})
        assert await _settled(recorded, "failed") == ["failed"]
    after = recorded.versions[-1]
    assert _gpu_resources(after, "capacity") == {"nvidia.com/gpu": "2"}
    assert all(v["metadata"]["labels"].get(OPERAND_DEPLOY_LABELS[0]) != PAUSED for v in recorded.versions)


async def test_a_profile_the_gpu_lacks_fails_after_pending_and_changes_nothing(
    admin: RestClient, mig_manager: MigManagerSim
) -> None:
    # all-1g.20gb exists in the default config (for 80 GB GPUs) but not on an A100-40GB.
    node = await _node(admin, product=A100_40GB, gpus=8, strategy="single", applied="all-3g.20gb")
    before = (await admin.get("Node", node)).body
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-1g.20gb"})
        assert await _settled(recorded, "pending", "failed") == ["pending", "failed"]
    after = recorded.versions[-1]
    assert _gpu_resources(after, "capacity") == _gpu_resources(before, "capacity") == {"nvidia.com/gpu": "16"}
    assert _gpu_resources(after, "allocatable") == {"nvidia.com/gpu": "16"}
    assert after["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB-MIG-3g.20gb"
    assert all(after["metadata"]["labels"][label] == "true" for label in OPERAND_DEPLOY_LABELS)


async def test_the_per_node_config_map_wins_over_the_default(admin: RestClient, mig_manager: MigManagerSim) -> None:
    node = await _node(admin, product=H100, gpus=2, strategy="mixed", applied="all-disabled")
    custom = "version: v1\nmig-configs:\n  two-by-3g: [{devices: [1], mig-enabled: true, mig-devices: {3g.40gb: 2}}]\n"
    await apply_objects(admin, [mig_config_map(custom, name=node_config_map(node), namespace=OPERATOR_NAMESPACE)])
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-1g.10gb"})  # only in the default
        assert await _settled(recorded, "failed") == ["failed"]
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "two-by-3g"})
        assert await _settled(recorded, "failed", "pending", "success") == ["failed", "pending", "success"]
    assert _gpu_resources(recorded.versions[-1], "capacity") == {"nvidia.com/gpu": "1", "nvidia.com/mig-3g.40gb": "2"}


async def test_a_hung_reconfiguration_stays_pending_until_released(admin: RestClient, mig_manager: MigManagerSim) -> None:
    node = await _node(admin, product=H100, gpus=8, strategy="single", applied="all-disabled")
    mig_manager.hang(node)
    try:
        async with history(admin, "Node", node) as recorded:
            before = _gpu_resources(recorded.versions[0], "allocatable")

            def wedged(version: dict[str, Any]) -> bool:
                # The GPUs going from the status (the device plugin gone) is the hung reconfiguration's last
                # write, after the labels: a version with only the labels is not yet the wedge.
                labels = version["metadata"]["labels"]
                return (
                    labels.get(MIG_STATE_LABEL) == "pending"
                    and all(labels.get(label) == PAUSED for label in OPERAND_DEPLOY_LABELS)
                    and _gpu_resources(version, "allocatable") != before
                )

            await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-3g.40gb"})
            stuck = await poll(
                lambda: recorded.versions[-1],
                wedged,
                what="the node to sit in pending with its operands paused and its GPUs' allocatable changed",
            )
            assert stuck["metadata"]["labels"][MIG_CONFIG_LABEL] == "all-3g.40gb"
            assert _gpu_resources(stuck, "allocatable") == {"nvidia.com/gpu": "0"}  # the known wedge

            mig_manager.hang(node, False)
            await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-7g.80gb"})
            # Had the first reconfiguration finished, there would be a success before the second pending.
            assert await _settled(recorded, "pending", "success") == ["pending", "success"]
    finally:
        mig_manager.hang(node, False)
    after = recorded.versions[-1]
    assert _gpu_resources(after, "capacity") == {"nvidia.com/gpu": "8"}
    assert after["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-7g.80gb"


async def test_setting_the_same_value_again_does_nothing(admin: RestClient, mig_manager: MigManagerSim) -> None:
    node = await _node(admin, product=A100_40GB, gpus=2, strategy="single", applied="all-disabled")
    async with history(admin, "Node", node) as recorded:
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-1g.20gb"})  # does not fit: pending → failed
        await _settled(recorded, "pending", "failed")
        # The same value again, with an unrelated change so the node really is updated: no retry.
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-1g.20gb", "touched": "1"})
        # A real change afterwards is handled; a retry would have gone pending → failed before it.
        await _relabel(admin, node, {MIG_CONFIG_LABEL: "all-7g.40gb"})
        seen = await _settled(recorded, "pending", "failed", "pending", "success")
    assert seen == ["pending", "failed", "pending", "success"]
    assert _gpu_resources(recorded.versions[-1], "capacity") == {"nvidia.com/gpu": "2"}


async def test_a_node_first_seen_with_a_pending_label_is_reconfigured(admin: RestClient, mig_manager: MigManagerSim) -> None:
    # The informer's AddFunc: the label's value when the node appears is applied.
    node = unique("mig-new")
    obj = mig_node_object(node, product=H100, gpus=8, strategy="single", labels={MIG_CONFIG_LABEL: "all-3g.40gb"})
    assert MIG_STATE_LABEL not in obj["metadata"]["labels"]
    await apply_objects(admin, [obj])

    async def settled() -> dict[str, Any]:
        return (await admin.get("Node", node)).body

    after = await poll(settled, lambda n: n["metadata"]["labels"].get(MIG_STATE_LABEL) == "success", what="the new node's config")
    assert _gpu_resources(after, "capacity") == {"nvidia.com/gpu": "16"}
