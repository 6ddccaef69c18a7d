"""`gpuctl snapshot --json` against the whole real test bed matches the fleet
that was loaded: the joins across Kubernetes and Prometheus are right."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest

from gpuctl.model import Snapshot
from gpuctl.sim.fleet import Fleet
from testbed.bed import Telemetry
from testbed.controlplane import ADMIN, USER_A, ControlPlane

pytestmark = pytest.mark.testbed


async def _gpuctl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gpuctl", *args], capture_output=True, text=True, timeout=60
    )


async def test_snapshot_json_matches_the_loaded_fleet(control_plane: ControlPlane, fleet: Fleet, telemetry: Telemetry) -> None:
    done = await _gpuctl(
        "snapshot", "--json", "--kubeconfig", str(control_plane.kubeconfig(ADMIN)),
        "--prometheus", telemetry.monitoring.prometheus_url,
    )
    assert done.returncode == 0, done.stderr
    snapshot = Snapshot.model_validate_json(done.stdout)

    assert not snapshot.metrics.stale and snapshot.watch.connected
    assert {n.name for n in snapshot.nodes} >= {n.name for n in fleet.nodes}

    # Every simulated device appears once, on the right node, with its UUID and MIG identity.
    sim_gpus = {g.key: g for g in fleet.gpus}
    gpus = {g.key: g for g in snapshot.gpus if g.node in {n.name for n in fleet.nodes}}
    assert set(gpus) == set(sim_gpus)
    for key, sim in sim_gpus.items():
        assert (gpus[key].uuid, gpus[key].mig_profile, gpus[key].pool) == (sim.uuid, sim.mig_profile, fleet.node_by_name[sim.node].pool)

    # Which pod holds which GPU comes from DCGM's pod labels, joined to the watched pods.
    holders = {key: f"{pod.namespace}/{pod.name}" for key, pod in fleet.pod_by_gpu.items()}
    assert {k: g.pod.key for k, g in gpus.items() if g.pod} == holders
    pods = {p.key: p for p in snapshot.pods}
    for sim_pod in fleet.pods:
        pod = pods[sim_pod.key]
        assert pod.node == sim_pod.node or (sim_pod.node is None and pod.phase == "Pending")
        assert set(pod.gpu_keys) == set(sim_pod.gpu_keys)

    # Pool totals: allocatable devices per pool.
    expected_totals = Counter()
    for node in fleet.nodes:
        expected_totals[node.pool] += sum(node.resources.values())
    assert {p.name: p.gpus_total for p in snapshot.pools if p.name in expected_totals} == dict(expected_totals)

    # Quotas as the real quota controller counts them.
    namespaces = {n.name: n for n in snapshot.namespaces}
    for sim_ns in fleet.namespaces:
        if sim_ns.gpu_quota_hard is not None:
            assert namespaces[sim_ns.name].gpu_quota_hard == sim_ns.gpu_quota_hard
            assert namespaces[sim_ns.name].gpu_quota_used == fleet.quota_used(sim_ns.name)["requests.nvidia.com/gpu"]


async def test_snapshot_exit_codes_name_the_cause(control_plane: ControlPlane, telemetry: Telemetry) -> None:
    # user-a may not list nodes: unauthorised is exit 3 with one line, no traceback.
    denied = await _gpuctl("snapshot", "--kubeconfig", str(control_plane.kubeconfig(USER_A)), "--prometheus", telemetry.monitoring.prometheus_url)
    assert denied.returncode == 3, denied.stderr
    assert "Traceback" not in denied.stderr
    assert "user-a" in denied.stderr or "forbidden" in denied.stderr.lower()

    bad_flag = await _gpuctl("snapshot", "--refresh", "soon")
    assert bad_flag.returncode == 2
