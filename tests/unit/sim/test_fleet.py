"""The simulated fleet: deterministic, realistic, and consistent at every size."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from gpuctl.sim import build_fleet
from gpuctl.sim.catalog import H100_PROFILES, MODELS_BY_NAME, POOL_LABEL
from gpuctl.sim.fleet import Fleet, SimPdb

from .invariants import assert_consistent, assert_pending_do_not_fit

UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PCI_RE = re.compile(r"^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet()


def test_same_seed_same_fleet_other_seed_other_names() -> None:
    assert build_fleet(7) == build_fleet(7)
    other = build_fleet(8)
    assert {n.name for n in other.nodes}.isdisjoint({n.name for n in build_fleet(7).nodes})
    assert Counter(p.behaviour for p in other.pods) == Counter(p.behaviour for p in build_fleet(7).pods)


def test_default_pools(fleet: Fleet) -> None:
    physical = Counter()
    nodes = Counter()
    for node in fleet.nodes:
        nodes[node.pool] += 1
        physical[node.labels["nvidia.com/gpu.product"]] += int(node.labels["nvidia.com/gpu.count"])
        assert node.labels[POOL_LABEL] == node.pool
    assert nodes == {"a100-train": 4, "h100-mig": 2, "l4-infer": 3, "t4-batch": 2}
    assert physical == {"NVIDIA-A100-SXM4-80GB": 32, "NVIDIA-H100-80GB-HBM3": 16, "NVIDIA-L4": 12, "Tesla-T4": 8}
    assert fleet.physical_gpus == 68


def test_gfd_labels(fleet: Fleet) -> None:
    for node in fleet.nodes:
        labels = node.labels
        model = node.gpus[0].model
        assert labels["nvidia.com/gpu.product"] == model.replace(" ", "-")
        assert labels["nvidia.com/gpu.family"] in {"ampere", "hopper", "ada-lovelace", "turing"}
        assert labels["nvidia.com/gpu.replicas"] == "1"
        assert labels["nvidia.com/mig.capable"] in {"true", "false"}
        assert labels["nvidia.com/gpu.memory"] == str(MODELS_BY_NAME[model].mem_mib)
        if labels["nvidia.com/mig.capable"] == "true":
            assert labels["nvidia.com/mig.config.state"] == "success"
            assert labels["nvidia.com/mig.config"]
        if labels["nvidia.com/mig.strategy"] == "mixed":
            assert labels["nvidia.com/mig.config"] in {"all-balanced", "all-3g.40gb"}


def test_devices(fleet: Fleet) -> None:
    physical: dict[str, set[str]] = {}
    for gpu in fleet.gpus:
        assert UUID_RE.match(gpu.uuid), gpu.uuid
        assert PCI_RE.match(gpu.pci_bus_id), gpu.pci_bus_id
        physical.setdefault(gpu.uuid, set()).add(f"{gpu.node}/{gpu.index}")
    assert all(len(parents) == 1 for parents in physical.values()), "a UUID is shared only by MIG siblings"
    assert len(physical) == fleet.physical_gpus
    for node in fleet.nodes:
        resources = Counter(g.resource for g in node.gpus)
        assert {k: v for k, v in node.resources.items() if v} == dict(resources)
        if node.labels["nvidia.com/mig.strategy"] == "mixed":
            assert node.resources["nvidia.com/gpu"] == 0
            for resource, count in resources.items():
                assert node.labels[f"{resource}.count"] == str(count)


def test_mig_instances_fit_their_gpu(fleet: Fleet) -> None:
    per_gpu: dict[str, list] = {}
    for gpu in fleet.gpus:
        if gpu.mig_profile:
            per_gpu.setdefault(f"{gpu.node}/{gpu.index}", []).append(gpu)
    assert len(per_gpu) == 16
    for parent, instances in per_gpu.items():
        profiles = [H100_PROFILES[i.mig_profile] for i in instances]
        assert sum(p.slices for p in profiles) <= 7, parent
        assert sum(p.mem_mib for p in profiles) <= 81559, parent
        assert len({i.mig_instance for i in instances}) == len(instances), parent
        assert len({i.uuid for i in instances}) == 1
    balanced = [g for g in fleet.gpus if g.node == fleet.nodes[4].name and g.index == 0]
    assert sorted(g.mig_profile for g in balanced) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]


def test_pods_hold_real_devices_and_quotas_hold(fleet: Fleet) -> None:
    assert_consistent(fleet)
    assert_pending_do_not_fit(fleet)


def test_stories(fleet: Fleet) -> None:
    behaviours = Counter(p.behaviour for p in fleet.pods if p.node)
    assert set(behaviours) == {"busy", "idle", "hot", "memory-full", "bursty"}
    long_idle = [p for p in fleet.pods if p.behaviour == "idle" and p.idle_since_t is not None and p.idle_since_t < -1800]
    assert long_idle
    assert all(p.idle_since_t is not None for p in fleet.pods if p.behaviour == "idle")
    assert {p.owner_kind for p in fleet.pods} == {"Job", "CronJob", "Deployment", "StatefulSet", None}
    assert len([p for p in fleet.pods if p.node is None]) >= 3
    usage = {
        ns.name: fleet.quota_used(ns.name).get("requests.nvidia.com/gpu", 0) / ns.gpu_quota_hard
        for ns in fleet.namespaces
        if ns.gpu_quota_hard
    }
    assert [name for name, fill in usage.items() if fill >= 0.85] == ["team-a"]
    assert any(ns.gpu_quota_hard is None for ns in fleet.namespaces)
    assert len(fleet.xid_faults) == 1
    (fault,) = fleet.xid_faults
    assert fault not in fleet.pod_by_gpu


def test_pdb_protects_a_serving_deployment(fleet: Fleet) -> None:
    (pdb,) = fleet.pdbs
    selected = [p for p in fleet.pods if p.namespace == pdb.namespace and all(p.labels.get(k) == v for k, v in pdb.match_labels.items())]
    assert {p.owner_kind for p in selected} == {"Deployment"}
    assert pdb.min_available is not None and 0 < pdb.min_available < len(selected)


def test_owner_references_and_labels(fleet: Fleet) -> None:
    for pod in fleet.pods:
        assert pod.node_selector == {POOL_LABEL: pod.pool}
        if pod.owner_kind == "Deployment":
            assert pod.ref_kind == "ReplicaSet" and pod.ref_name and pod.name.startswith(pod.ref_name + "-")
            assert pod.ref_name == f"{pod.owner_name}-{pod.labels['pod-template-hash']}"
        elif pod.owner_kind == "CronJob":
            assert pod.ref_kind == "Job" and pod.ref_name and pod.ref_name.startswith(f"{pod.owner_name}-")
        elif pod.owner_kind == "StatefulSet":
            assert re.fullmatch(rf"{pod.owner_name}-\d+", pod.name)
        elif pod.owner_kind is None:
            assert pod.ref_kind is None and pod.priority_class is None
        if pod.pool in ("a100-train", "h100-mig"):
            assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]


def test_scale_125_is_a_big_consistent_fleet() -> None:
    big = build_fleet(scale=125)
    assert big.physical_gpus >= 8000
    assert len(big.nodes) == 11 * 125
    assert len({n.name for n in big.nodes}) == len(big.nodes)
    assert len({g.key for g in big.gpus}) == len(big.gpus)
    assert_consistent(big)
    assert len(big.pdbs) == 125


def test_nodes_per_pool_partial_cycles() -> None:
    small = build_fleet(nodes_per_pool={"a100-train": 5, "h100-mig": 0, "l4-infer": 1})
    assert Counter(n.pool for n in small.nodes) == {"a100-train": 5, "l4-infer": 1, "t4-batch": 2}
    assert_consistent(small)
    assert_pending_do_not_fit(small)
    assert not small.pdbs


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown pools"):
        build_fleet(nodes_per_pool={"v100": 2})
    with pytest.raises(ValueError):
        build_fleet(scale=0)


def test_budgets_select_by_index_what_a_scan_of_the_fleet_selects() -> None:
    fleet = build_fleet(3, scale=4)
    # Besides the fleet's own (one label each): none, two labels, a label no pod has, another namespace's.
    first = fleet.pdbs[0]
    app = first.match_labels["app"]
    other = next(ns.name for ns in fleet.namespaces if ns.name != first.namespace)
    extra = (
        SimPdb(first.namespace, "all", {}),
        SimPdb(first.namespace, "two", {"app": app, **{k: v for k, v in fleet.selected_by(first)[0].labels.items() if k != "app"}}),
        SimPdb(first.namespace, "none", {"app": "no-such-app"}),
        SimPdb(other, "elsewhere", {"app": app}),
    )
    for pdb in (*fleet.pdbs, *extra):
        scanned = tuple(p for p in fleet.pods if p.namespace == pdb.namespace and pdb.selects(p))
        assert fleet.selected_by(pdb) == scanned, pdb.name
    assert fleet.selected_by(extra[0]) == fleet.pods_in(first.namespace) and fleet.selected_by(extra[1])
    assert not fleet.selected_by(extra[2]) and not fleet.selected_by(extra[3])
