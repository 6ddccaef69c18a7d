"""Workload churn: deterministic whatever the step, and the fleet stays consistent."""

from __future__ import annotations

from collections import Counter

from gpuctl.sim import build_fleet
from gpuctl.sim.churn import ARRIVAL_QUOTA_FILL, FleetChurn

from .invariants import assert_consistent

TWO_HOURS = 2 * 3600


def test_same_events_whatever_the_step() -> None:
    fleet = build_fleet()
    stepped, jumped = FleetChurn(fleet, seed=7), FleetChurn(fleet, seed=7)
    events = [e for t in range(0, TWO_HOURS, 2) for e in stepped.advance(t)]
    assert jumped.advance(TWO_HOURS - 2) == events
    assert stepped.fleet.pods == jumped.fleet.pods
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_other_seed_other_story() -> None:
    fleet = build_fleet()
    assert FleetChurn(fleet, seed=7).advance(1800) != FleetChurn(fleet, seed=8).advance(1800)


def test_nothing_happens_before_the_first_event() -> None:
    fleet = build_fleet()
    churn = FleetChurn(fleet, seed=7)
    assert churn.advance(0) == []
    assert churn.fleet is fleet  # the same object until an event changes it


def test_fleet_stays_consistent_and_every_kind_of_event_happens() -> None:
    fleet = build_fleet()
    churn = FleetChurn(fleet, seed=7)
    kinds: Counter[str] = Counter()
    for t in range(0, TWO_HOURS, 60):
        for event in churn.advance(t):
            kinds[event.kind] += 1
        assert_consistent(churn.fleet)
    assert kinds["finished"] and kinds["arrived"] and kinds["scheduled"]
    assert churn.fleet.nodes == fleet.nodes


def test_stories_survive_the_churn() -> None:
    fleet = build_fleet()
    churn = FleetChurn(fleet, seed=7)
    churn.advance(TWO_HOURS)
    keep = {p.key for p in fleet.pods if p.behaviour in ("idle", "hot", "memory-full") or p.owner_kind != "Job"}
    keep -= {p.key for p in fleet.pods if p.node is None}  # pending pods may get scheduled
    now = {p.key: p for p in churn.fleet.pods}
    for key in keep:
        assert key in now, key
        before = next(p for p in fleet.pods if p.key == key)
        assert now[key].gpu_keys == before.gpu_keys


def test_arrivals_leave_quota_headroom() -> None:
    fleet = build_fleet()
    churn = FleetChurn(fleet, seed=7)
    arrived = [e.pod for e in churn.advance(4 * 3600) if e.kind == "arrived"]
    assert arrived
    for ns in churn.fleet.namespaces:
        if ns.gpu_quota_hard and any(p.namespace == ns.name for p in arrived):
            used = churn.fleet.quota_used(ns.name).get("requests.nvidia.com/gpu", 0)
            start = fleet.quota_used(ns.name).get("requests.nvidia.com/gpu", 0)
            assert used <= max(start, ARRIVAL_QUOTA_FILL * ns.gpu_quota_hard)


def test_a_big_fleet_churns_consistently() -> None:
    fleet = build_fleet(scale=10)
    churn = FleetChurn(fleet, seed=7, mean_gap_s=4.5)
    kinds: Counter[str] = Counter()
    for t in range(0, 3600, 600):
        kinds.update(e.kind for e in churn.advance(t))
        assert_consistent(churn.fleet)
    assert min(kinds.values()) > 50, kinds
