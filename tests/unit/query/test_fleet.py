import pytest

from gpuctl.model import Node
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import READINGS, FleetIndex
from gpuctl.query.states import GpuState, gpu_state
from tests.tui.factory import build_snapshot


def test_groups_gpus_by_pool_and_node_in_order() -> None:
    snap = build_snapshot(2)
    idx = FleetIndex(snap)
    assert list(idx.nodes_by_pool) == sorted(p.name for p in snap.pools)
    node = snap.nodes[0].name
    keys = [g.key for g in idx.gpus_by_node[node]]
    assert keys == sorted(keys, key=lambda k: tuple(int(p.removeprefix("mig")) for p in k.split("/")[1:]))


def test_node_stats_count_busy_idle_and_quiet_holders() -> None:
    snap = build_snapshot(2)
    idx = FleetIndex(snap)
    for node in snap.nodes:
        held = [g for g in snap.gpus if g.node == node.name and g.pod]
        s = idx.stats(node.name)
        assert s.allocated == len(held)
        assert s.idle == sum(g.idle for g in held)
        assert s.busy == sum(g.busy for g in held)
        assert s.busy + s.idle <= s.allocated  # the rest are quiet: low, but not for the whole window


def test_node_without_metrics_gets_no_data_cells() -> None:
    snap = build_snapshot(1)
    extra = Node(name="dark-node", pool="h100-train", gpu_model="NVIDIA H100", gpu_allocatable=8, ready=True)
    idx = FleetIndex(snap.model_copy(update={"nodes": (*snap.nodes, extra)}))
    cells = idx.gpus_by_node["dark-node"]
    assert len(cells) == 8 and all(g.util_pct is None for g in cells)
    assert "dark-node" in idx.nodes_by_pool["h100-train"]


def test_visible_gpus_follow_the_filter() -> None:
    idx = FleetIndex(build_snapshot(2))
    only_l4 = idx.visible_gpus(Filter.parse("pool:l4"))
    assert only_l4 and all(n.startswith("l4-infer") for n in only_l4)
    by_ns = idx.visible_gpus(Filter.parse("ns:vision"))
    assert all(g.pod and g.pod.namespace == "vision" for gs in by_ns.values() for g in gs)
    assert idx.visible_gpus(Filter()) is idx.gpus_by_node


def test_the_index_counts_what_views_show_once() -> None:
    snap = build_snapshot(2)
    idx = FleetIndex(snap)
    assert idx.snapshot_keys == [g.key for g in snap.gpus] and idx.gpu_keys == set(idx.gpus)
    assert idx.allocated == sum(g.pod is not None for g in snap.gpus) > 0
    assert idx.idle == sum(g.idle for g in snap.gpus) > 0
    for name, gpus in idx.gpus_by_node.items():
        for i, reading in enumerate(READINGS):
            values = [v for g in gpus if (v := getattr(g, reading)) is not None]
            total, count = idx.stats(name).sums[i]
            assert count == len(values) and total == pytest.approx(sum(values))


def test_node_stats_count_as_gpu_state_says_stale_holders_held_but_neither_busy_nor_idle() -> None:
    snap = build_snapshot(2)
    stale = {g.key for g in snap.gpus[::3]}
    gpus = tuple(g.model_copy(update={"stale": True}) if g.key in stale else g for g in snap.gpus)
    idx = FleetIndex(snap.model_copy(update={"gpus": gpus}))
    for node in snap.nodes:
        states = [gpu_state(g) for g in gpus if g.node == node.name]
        s = idx.stats(node.name)
        assert s.allocated == sum(st is not GpuState.FREE for st in states)
        assert (s.busy, s.idle) == (states.count(GpuState.BUSY), states.count(GpuState.IDLE))
    assert any(g.pod is not None and g.key in stale for g in gpus)  # the case is exercised


def test_gpus_listed_out_of_order_or_apart_are_grouped_in_order() -> None:
    snap = build_snapshot(2)
    shuffled = tuple(reversed(snap.gpus[:9])) + snap.gpus[9:] + (snap.gpus[0].model_copy(update={"index": 99}),)
    idx = FleetIndex(snap.model_copy(update={"gpus": shuffled}))
    in_order = FleetIndex(snap)
    for node, gpus in idx.gpus_by_node.items():
        expected = in_order.gpus_by_node[node] + ([shuffled[-1]] if node == snap.gpus[0].node else [])
        assert gpus == expected


def _same_index(a: FleetIndex, b: FleetIndex) -> None:
    assert a.snapshot_keys == b.snapshot_keys and a.gpus == b.gpus and a.gpu_keys == b.gpu_keys
    assert a.gpus_by_node == b.gpus_by_node and a.nodes_by_pool == b.nodes_by_pool
    assert all(a.stats(n) == b.stats(n) for n in a.gpus_by_node) and (a.allocated, a.idle) == (b.allocated, b.idle)


def test_an_index_built_on_the_one_before_is_the_index_built_anew() -> None:
    snap = build_snapshot(2)
    before = FleetIndex(snap)
    # A metrics refresh: every reading moves, the GPUs stay where they were.
    gpus = tuple(
        g.model_copy(update={"util_pct": (g.util_pct or 0) / 2 + 1, "pod": None if i % 5 == 0 else g.pod})
        for i, g in enumerate(snap.gpus)
    )
    moved = snap.model_copy(update={"gpus": gpus})
    reused = FleetIndex(moved, before)
    _same_index(reused, FleetIndex(moved))
    assert reused.snapshot_keys is before.snapshot_keys and reused.gpu_keys is before.gpu_keys  # taken over, not redone
    assert all(a is b for a, b in zip(reused.gpus.values(), moved.gpus, strict=False))  # the new readings
    # Told that the GPUs are the same (Changes.same_gpus), it takes them over without comparing.
    told = FleetIndex(moved, before, same_gpus=True)
    _same_index(told, FleetIndex(moved))
    assert told.snapshot_keys is before.snapshot_keys and told.gpu_keys is before.gpu_keys
    # A GPU gone, a GPU come, the order changed: each is worked out anew.
    for gpus in (snap.gpus[1:], (*snap.gpus, snap.gpus[0].model_copy(update={"index": 99})), tuple(reversed(snap.gpus))):
        changed = snap.model_copy(update={"gpus": gpus})
        _same_index(FleetIndex(changed, before), FleetIndex(changed))


def test_pods_by_key_and_by_node_are_worked_out_when_asked_for() -> None:
    snap = build_snapshot(2)
    idx = FleetIndex(snap)
    assert "pods" not in vars(idx) and "pods_by_node" not in vars(idx)  # a heatmap update never pays for them
    assert idx.pods == {p.key: p for p in snap.pods} and idx.pods
    for pod in snap.pods:
        assert pod.node is None or pod in idx.pods_by_node[pod.node]
    assert sum(map(len, idx.pods_by_node.values())) == sum(1 for p in snap.pods if p.node)
    assert idx.pods is idx.pods  # once
