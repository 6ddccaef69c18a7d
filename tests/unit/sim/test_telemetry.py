"""Simulated DCGM telemetry: deterministic, smooth, and true to each pod's behaviour."""

from __future__ import annotations

import pytest

from gpuctl.sim import build_fleet
from gpuctl.sim.fleet import Fleet
from gpuctl.sim.telemetry import HOT_TEMP_C, STEP, FleetTelemetry
from gpuctl.state.records import GpuSample

TIMES = range(0, 3 * 3600, 97)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet()


@pytest.fixture(scope="module")
def series(fleet: Fleet) -> dict[float, list[GpuSample]]:
    telemetry = FleetTelemetry(fleet, seed=7)
    return {t: telemetry.samples_at(t) for t in TIMES}


def rebind(telemetry: FleetTelemetry, fleet: Fleet) -> FleetTelemetry:
    """`rebind_steps` run to its end: the rebound telemetry."""
    steps = telemetry.rebind_steps(fleet)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def by_behaviour(fleet: Fleet, samples: list[GpuSample], behaviour: str | None) -> list[GpuSample]:
    holders = fleet.pod_by_gpu
    out = []
    for s in samples:
        pod = holders.get(s.key)
        if (pod.behaviour if pod else None) == behaviour:
            out.append(s)
    return out


def test_same_t_same_seed_same_samples(fleet: Fleet) -> None:
    a, b = FleetTelemetry(fleet, seed=7), FleetTelemetry(build_fleet(), seed=7)
    assert a.samples_at(123.5) == b.samples_at(123.5)
    assert a.samples_at(123.5) != a.samples_at(125.5)
    assert a.samples_at(123.5) != FleetTelemetry(fleet, seed=8).samples_at(123.5)


def test_one_sample_per_device_with_its_pod(fleet: Fleet, series: dict[float, list[GpuSample]]) -> None:
    samples = series[0]
    assert [s.key for s in samples] == [g.key for g in fleet.gpus]
    holders = fleet.pod_by_gpu
    for s in samples:
        gpu = fleet.gpu_by_key[s.key]
        assert (s.uuid, s.model, s.mig_profile, s.mig_instance) == (gpu.uuid, gpu.model, gpu.mig_profile, gpu.mig_instance)
        pod = holders.get(s.key)
        assert (s.pod.key if s.pod else None) == (pod.key if pod else None)
        if pod:
            assert s.pod.container == pod.container


def test_units_and_memory_add_up(series: dict[float, list[GpuSample]], fleet: Fleet) -> None:
    for samples in series.values():
        for s in samples:
            assert 0 <= s.util_pct <= 100
            assert s.mem_used_mib + s.mem_free_mib == fleet.gpu_by_key[s.key].mem_total_mib
            assert 20 <= s.temp_c <= 95
            assert 1 <= s.power_w <= 700


def test_idle_pods_are_really_idle_and_free_gpus_have_no_pod(fleet: Fleet, series: dict[float, list[GpuSample]]) -> None:
    for samples in series.values():
        idle = by_behaviour(fleet, samples, "idle")
        assert idle and all(s.util_pct <= 2 for s in idle)
        assert all(s.mem_used_mib > 0 for s in idle), "an idle holder still has its model loaded"
        free = by_behaviour(fleet, samples, None)
        assert free and all(s.util_pct == 0 and s.pod is None and s.mem_used_mib == 0 for s in free)


def test_busy_hot_and_full_gpus(fleet: Fleet, series: dict[float, list[GpuSample]]) -> None:
    for samples in series.values():
        assert all(60 <= s.util_pct <= 100 for s in by_behaviour(fleet, samples, "busy"))
        hot = by_behaviour(fleet, samples, "hot")
        assert hot and all(s.temp_c >= HOT_TEMP_C - 2 for s in hot)
        others = [s for s in samples if s not in hot]
        assert max(s.temp_c for s in others) < 80
        full = by_behaviour(fleet, samples, "memory-full")
        assert full and all(s.mem_used_mib / (s.mem_used_mib + s.mem_free_mib) > 0.95 for s in full)


def test_bursty_gpus_burst_but_never_look_idle(fleet: Fleet, series: dict[float, list[GpuSample]]) -> None:
    bursty = {s.key: [] for s in by_behaviour(fleet, series[0], "bursty")}
    for samples in series.values():
        for s in by_behaviour(fleet, samples, "bursty"):
            bursty[s.key].append(s.util_pct)
    for key, utils in bursty.items():
        assert min(utils) >= 5, key  # 5 % is the store's default idle threshold
        assert max(utils) - min(utils) > 50, key


def test_smooth_over_a_tick(fleet: Fleet) -> None:
    telemetry = FleetTelemetry(fleet, seed=7)
    for t in range(0, 1200, 60):
        now, later = telemetry.samples_at(t), telemetry.samples_at(t + 2)
        for a, b in zip(now, later, strict=True):
            assert abs(a.util_pct - b.util_pct) <= 15, a.key
            assert abs(a.temp_c - b.temp_c) <= 5, a.key  # a burst heats a GPU in seconds


def test_mig_instances_share_their_gpu_temperature_power_and_uuid(series: dict[float, list[GpuSample]]) -> None:
    parents: dict[str, set] = {}
    for s in series[582]:
        if s.mig_instance is not None:
            parents.setdefault(f"{s.hostname}/{s.index}", set()).add((s.temp_c, s.power_w, s.uuid))
    assert len(parents) == 16
    assert all(len(v) == 1 for v in parents.values())


def test_xid_only_on_the_faulty_gpu(fleet: Fleet, series: dict[float, list[GpuSample]]) -> None:
    for samples in series.values():
        assert {s.key: s.xid for s in samples if s.xid} == dict(fleet.xid_faults)
        assert all(s.xid == 0 for s in samples if s.key not in fleet.xid_faults)


def test_rebind_keeps_each_gpu_its_own_noise(fleet: Fleet) -> None:
    from dataclasses import replace

    telemetry = FleetTelemetry(fleet, seed=7)
    moved = replace(fleet, pods=fleet.pods[1:])  # the first pod finished: its GPUs go free
    rebound = rebind(telemetry, moved).samples_at(300)
    fresh = FleetTelemetry(moved, seed=7).samples_at(300)
    assert rebound == fresh
    freed = set(fleet.pods[0].gpu_keys)
    before = {s.key: s for s in telemetry.samples_at(300)}
    for s in rebound:
        if s.key in freed:
            assert s.pod is None and s.util_pct == 0
        elif s.mig_instance is None and s.hostname != fleet.pods[0].node:
            assert s == before[s.key]


def test_rebind_follows_a_new_holder_and_a_new_xid(fleet: Fleet) -> None:
    from dataclasses import replace

    telemetry = FleetTelemetry(fleet, seed=7)
    first = next(p for p in fleet.pods if p.gpu_keys)
    # Another pod on the same GPUs (a rebind reuses a device only while the same pod holds it), and a new XID elsewhere.
    successor = replace(first, name=f"{first.name}-next", behaviour="hot" if first.behaviour != "hot" else "idle")
    faulty = next(g.key for g in fleet.gpus if g.key not in fleet.xid_faults)
    moved = replace(fleet, pods=tuple(successor if p is first else p for p in fleet.pods), xid_faults={**fleet.xid_faults, faulty: 79})
    rebound = rebind(telemetry, moved).samples_at(300)
    assert rebound == FleetTelemetry(moved, seed=7).samples_at(300)
    by_key = {s.key: s for s in rebound}
    assert all(by_key[key].pod is not None and by_key[key].pod.name == successor.name for key in first.gpu_keys)
    assert by_key[faulty].xid == 79


def test_in_steps_the_same_readings_and_rebind_as_at_once() -> None:
    from dataclasses import replace

    big = build_fleet(scale=20)  # more devices than one step
    telemetry = FleetTelemetry(big, seed=7)
    samples: list[GpuSample] = []
    steps = sum(1 for _ in telemetry.sample_steps(300, samples))
    assert steps >= 2 * (len(big.gpus) // STEP) and samples == telemetry.samples_at(300)
    # Other nodes (the MIG manager, Karpenter, a node gone): every device is checked again, in steps.
    renoded = replace(big, pods=big.pods[1:], nodes=big.nodes[:-1])
    rebinding = telemetry.rebind_steps(renoded)
    rebind_steps = 0
    while True:
        try:
            next(rebinding)
            rebind_steps += 1
        except StopIteration as done:
            rebound = done.value
            break
    assert rebind_steps == len(renoded.gpus) // STEP
    assert rebound.fleet is renoded and rebound.samples_at(300) == FleetTelemetry(renoded, seed=7).samples_at(300)


def test_a_rebind_on_the_same_nodes_rebuilds_only_the_devices_that_changed_holder() -> None:
    from dataclasses import replace

    big = build_fleet(scale=20)
    telemetry = FleetTelemetry(big, seed=7)
    gone, annotated = big.pods[0], next(p for p in big.pods[1:] if p.gpu_keys)
    arrived = replace(gone, name=f"{gone.name}-next", behaviour="hot" if gone.behaviour != "hot" else "idle")
    changed = tuple(arrived if p is gone else replace(p, annotations={"a": "b"}) if p is annotated else p for p in big.pods)
    moved = replace(big, pods=changed)
    steps = telemetry.rebind_steps(moved)
    with pytest.raises(StopIteration) as done:
        next(steps)  # no step: a few devices of thousands
    rebound = done.value.value
    assert rebound.fleet is moved and rebound.samples_at(300) == FleetTelemetry(moved, seed=7).samples_at(300)
    rebuilt = {a.gpu.key for a, b in zip(rebound._devices, telemetry._devices, strict=True) if a is not b}
    assert rebuilt == {*gone.gpu_keys, *annotated.gpu_keys}
