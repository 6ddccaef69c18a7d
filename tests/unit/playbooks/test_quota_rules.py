"""adjust-quota's pure decisions: the binding quota, the value checks, capacity and overcommit, Kueue spots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gpuctl.model import MetricsHealth, NamespaceUsage, Node, Snapshot, WatchHealth
from gpuctl.playbooks.quota_rules import (
    binding_quota,
    capacity,
    check_new_value,
    hard_field,
    locate_nominal,
    namespace_quota_total,
    no_quota_reason,
    nominal_field,
    overcommit_warning,
    parse_hard_field,
    parse_nominal_field,
    parse_used_field,
    queue_usage,
    queues_total,
    quota_key,
    shadowed_warning,
    used_field,
)

KEY = "requests.nvidia.com/gpu"


def quota(name: str, hard: dict[str, str], *, status_hard: dict[str, str] | None = None, used: dict[str, str] | None = None,
          scopes: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    status = {"hard": status_hard if status_hard is not None else hard, "used": used or {}}
    meta = {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "resourceVersion": "7"}
    return {"metadata": meta, "spec": spec, "status": status}


def test_the_lowest_unscoped_hard_limit_binds() -> None:
    quotas = [
        quota("wide", {KEY: "16"}, used={KEY: "3"}),
        quota("tight", {KEY: "8", "requests.cpu": "100"}, used={KEY: "3"}),
        quota("priority", {KEY: "2"}, scopes=["PriorityClass"]),
        quota("cpu-only", {"requests.cpu": "10"}),
    ]
    binding = binding_quota(quotas, KEY)
    assert binding.limit is not None
    assert (binding.limit.name, binding.limit.hard, binding.limit.used, binding.limit.uid) == ("tight", 8, 3, "uid-tight")
    assert [o.name for o in binding.others] == ["wide"]
    assert binding.scoped == ("priority",)


def test_the_enforced_value_decides_and_the_spec_value_is_what_changes() -> None:
    # spec raised to 10, the quota controller has not caught up: status (4) still binds.
    quotas = [quota("a", {KEY: "10"}, status_hard={KEY: "4"}), quota("b", {KEY: "6"})]
    limit = binding_quota(quotas, KEY).limit
    assert limit is not None and (limit.name, limit.hard, limit.enforced) == ("a", 10, 4)


def test_quantity_spellings_and_equal_limits_keep_the_first() -> None:
    quotas = [quota("first", {KEY: "2k"}), quota("second", {KEY: "2000"})]
    limit = binding_quota(quotas, KEY).limit
    assert limit is not None and (limit.name, limit.hard) == ("first", 2000)


def test_no_unscoped_quota_says_how_to_create_one() -> None:
    binding = binding_quota([quota("priority", {KEY: "2"}, scopes=["PriorityClass"])], KEY)
    assert binding.limit is None
    reason = no_quota_reason("team-x", KEY, binding.scoped)
    assert "kubectl create quota gpu -n team-x --hard=requests.nvidia.com/gpu=N" in reason
    assert "scoped quotas priority" in reason


def test_mig_keys() -> None:
    mig = quota_key("nvidia.com/mig-1g.10gb")
    assert mig == "requests.nvidia.com/mig-1g.10gb"
    limit = binding_quota([quota("mig", {mig: "7", KEY: "1"}, used={mig: "2"})], mig).limit
    assert limit is not None and (limit.hard, limit.used) == (7, 2)


@pytest.mark.parametrize(
    ("before", "new", "used", "force", "blocked", "warned"),
    [
        (4, 8, 3, False, [], []),
        (4, 4, 3, False, ["already 4"], []),
        (8, 2, 3, False, ["below the 3 in use", "force=true"], []),
        (8, 2, 3, True, [], ["below the 3 in use"]),
        (8, 3, 3, False, [], []),  # equal to usage is fine
        (4, 300, 0, False, ["max_gpus (256)"], []),
    ],
)
def test_new_value_checks(before: float, new: int, used: float, force: bool, blocked: list[str], warned: list[str]) -> None:
    got_blocked, got_warnings = check_new_value("q", before, new, used, force=force, max_gpus=256)
    assert bool(got_blocked) == bool(blocked) and all(b in " | ".join(got_blocked) for b in blocked)
    assert bool(got_warnings) == bool(warned) and all(w in " | ".join(got_warnings) for w in warned)


def test_a_higher_value_shadowed_by_another_quota_is_warned_about() -> None:
    binding = binding_quota([quota("low", {KEY: "4"}), quota("mid", {KEY: "8"}), quota("high", {KEY: "20"})], KEY)
    warning = shadowed_warning(KEY, 12, binding.others)
    assert warning is not None and "ResourceQuota mid also limits" in warning and "stays at 8" in warning
    assert shadowed_warning(KEY, 6, binding.others) is None


def _snapshot(nodes: list[Node], namespaces: list[NamespaceUsage]) -> Snapshot:
    return Snapshot(
        taken_at=datetime(2026, 1, 1, tzinfo=UTC),
        idle_threshold_pct=5,
        idle_window_s=3600,
        nodes=tuple(nodes),
        namespaces=tuple(namespaces),
        metrics=MetricsHealth(source="none"),
        watch=WatchHealth(source="none"),
    )


def test_capacity_and_overcommit() -> None:
    snapshot = _snapshot(
        [
            Node(name="a", pool="p", gpu_allocatable=8),
            Node(name="b", pool="p", gpu_allocatable=8, mig_allocatable={"nvidia.com/mig-1g.10gb": 7}),
        ],
        [
            NamespaceUsage(name="team-a", gpu_quota_hard=4),
            NamespaceUsage(name="team-b", gpu_quota_hard=6, mig_quota_hard={"nvidia.com/mig-1g.10gb": 4}),
            NamespaceUsage(name="free"),
        ],
    )
    assert capacity(snapshot, "nvidia.com/gpu") == 16
    assert capacity(snapshot, "nvidia.com/mig-1g.10gb") == 7
    # team-a's 4 is replaced by the new value; namespaces without a quota do not count.
    assert namespace_quota_total(snapshot, "nvidia.com/gpu", "team-a", 10) == (16, 2)
    assert overcommit_warning(16, "2 namespaces", "namespace quotas", "nvidia.com/gpu", 16) is None
    total, counted = namespace_quota_total(snapshot, "nvidia.com/gpu", "team-a", 11)
    warning = overcommit_warning(total, f"{counted} namespaces", "namespace quotas", "nvidia.com/gpu", 16)
    assert warning is not None and "add up to 17 across 2 namespaces, above the 16" in warning
    # A namespace without a quota yet counts with its new value.
    assert namespace_quota_total(snapshot, "nvidia.com/mig-1g.10gb", "team-c", 4) == (8, 2)


def queue(name: str, groups: list[dict[str, Any]], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": "u", "resourceVersion": "1"},
        "spec": {"resourceGroups": groups},
        "status": status or {},
    }


def group(covered: list[str], flavors: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "coveredResources": covered,
        "flavors": [
            {"name": f, "resources": [{"name": r, "nominalQuota": q} for r, q in quotas.items()]} for f, quotas in flavors.items()
        ],
    }


CQ = queue(
    "team-a",
    [
        group(["cpu", "memory"], {"default": {"cpu": "100", "memory": "1Ti"}}),
        group(
            ["cpu", "nvidia.com/gpu"],
            {"h100": {"cpu": "64", "nvidia.com/gpu": "8"}, "a100": {"cpu": "64", "nvidia.com/gpu": "4"}},
        ),
    ],
    {
        "flavorsReservation": [{"name": "h100", "resources": [{"name": "nvidia.com/gpu", "total": "6"}]}],
        "flavorsUsage": [{"name": "h100", "resources": [{"name": "nvidia.com/gpu", "total": "5"}]}],
    },
)


def test_locating_a_flavors_nominal_quota() -> None:
    spot = locate_nominal(CQ, "nvidia.com/gpu", "a100")
    assert not isinstance(spot, str)
    assert (spot.flavor, spot.value, spot.path) == ("a100", 4, "/spec/resourceGroups/1/flavors/1/resources/1/nominalQuota")
    several = locate_nominal(CQ, "nvidia.com/gpu", None)
    assert isinstance(several, str) and "several flavors for nvidia.com/gpu (h100, a100)" in several
    missing = locate_nominal(CQ, "nvidia.com/gpu", "l4")
    assert isinstance(missing, str) and "no flavor l4" in missing
    uncovered = locate_nominal(CQ, "nvidia.com/mig-1g.10gb", None)
    assert isinstance(uncovered, str) and "covers no nvidia.com/mig-1g.10gb" in uncovered
    only = queue("solo", [group(["nvidia.com/gpu"], {"h100": {"nvidia.com/gpu": "2"}})])
    spot = locate_nominal(only, "nvidia.com/gpu", None)
    assert not isinstance(spot, str) and spot.flavor == "h100"


def test_queue_usage_is_the_larger_of_reserved_and_used() -> None:
    assert queue_usage(CQ, "h100", "nvidia.com/gpu") == 6
    assert queue_usage(CQ, "a100", "nvidia.com/gpu") == 0


def test_queues_total_replaces_the_changed_flavor() -> None:
    other = queue("team-b", [group(["nvidia.com/gpu"], {"h100": {"nvidia.com/gpu": "10"}})])
    cpu_only = queue("batch", [group(["cpu"], {"default": {"cpu": "10"}})])
    assert queues_total([CQ, other, cpu_only], "team-a", "h100", "nvidia.com/gpu", 20) == (34, 2)


def test_fields_round_trip() -> None:
    assert parse_hard_field(hard_field(KEY)) == KEY
    assert parse_used_field(used_field(KEY)) == KEY
    assert parse_nominal_field(nominal_field("h100", "nvidia.com/gpu")) == ("h100", "nvidia.com/gpu")
    assert parse_hard_field(nominal_field("h100", "nvidia.com/gpu")) is None
    assert parse_nominal_field(hard_field(KEY)) is None
