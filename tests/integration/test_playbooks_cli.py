"""gpuctl's own node playbooks end to end against the real API server, from the CLI: scale-pool (a Cluster
API MachineDeployment) submitted, approved and executed with `gpuctl playbook`, relabel-mig (a MIG node)
submitted and approved with `gpuctl playbook` and carried out by an executor. Their logic's edge cases are
test_scale_pool.py's and test_relabel_mig.py's; adjust-quota's CLI and executor runs are test_engine.py's
and test_executor.py's.

user-a acts (through the admin's `--as`) in team-a and a group that may write what the playbooks declare;
user-b (team-b) approves, as the policy in engine_support says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from playbook_kit import clients, cluster_grant, live, operator_api
from test_scale_pool import POOL_WRITES, machine_deployment

from gpuctl.identity import Identity
from gpuctl.migparted import MIG_CONFIG_LABEL, MIG_STATE_LABEL
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.runs import run_name
from gpuctl.state.store import ClusterStore
from testbed.capi_provider import CAPI_NAMESPACE, CapiProvider
from testbed.controlplane import ADMIN, ControlPlane
from testbed.fleet_loader import wait_nodes_ready
from testbed.gpu_operator import mig_node_object
from testbed.kube import RestClient, apply_objects
from testbed.mig_manager import MigManagerSim
from testbed.objects import unique
from testbed.waiting import poll
from tests.integration.engine_support import audit_intact, cli, cli_flags, engine_at, records, settings
from tests.integration.test_executor import replica

pytestmark = pytest.mark.testbed
__all__ = ["live", "operator_api"]  # module fixtures from playbook_kit

AS_B = ["--as", "user-b", "--as-group", "team-b"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def as_a(admin: RestClient, operator_api: KubeApi) -> list[str]:
    """`--as` flags for user-a in team-a and in a group (team-…, which the policy lets the admin act as) that
    may make the writes the node playbooks declare, once RBAC has it."""
    group = unique("team-pools")
    await apply_objects(admin, cluster_grant(f"test:{group}", group, POOL_WRITES))
    acting = clients(operator_api, Identity(user="user-a", groups=("team-a", group))).acting
    await poll(lambda: acting.can_i("patch", "nodes"), lambda review: review.allowed, what=f"{group}'s grant to reach RBAC")
    return ["--as", "user-a", "--as-group", "team-a", "--as-group", group]


async def gpuctl(plane: ControlPlane, directory: Path, namespace: str, *args: str) -> tuple[int, str, str]:
    """`gpuctl ARGS` with gpuctl's own playbooks, pointed at the test bed as the admin."""
    return await asyncio.to_thread(cli, *args, *cli_flags(plane, directory, namespace), real=True)


async def test_scale_pool_from_the_cli_approved_by_someone_else(
    admin: RestClient, control_plane: ControlPlane, capi_provider: CapiProvider, engine_home: str, live: ClusterStore,
    as_a: list[str], tmp_path: Path,
) -> None:  # fmt: skip
    settings(control_plane.kubeconfig(ADMIN), tmp_path, engine_home)  # writes the policy and playbooks cli_flags name
    pool, _ = await machine_deployment(admin, live, 1)
    k = f"scale-{pool}"
    code, out, err = await gpuctl(control_plane, tmp_path, engine_home, "playbook", "run", "scale-pool", "-p", f"pool={pool}",
                                  "-p", "replicas=2", "--yes", "--key", k, *as_a)  # fmt: skip
    assert code == 0, err
    assert f"MachineDeployment/{CAPI_NAMESPACE}/{pool}" in out and "awaiting approval" in out, out
    run = run_name("scale-pool", k)
    code, _, err = await gpuctl(control_plane, tmp_path, engine_home, "playbook", "approve", run, *as_a)
    assert code == 4 and "their own run" in err
    assert (await gpuctl(control_plane, tmp_path, engine_home, "playbook", "approve", run, *AS_B))[0] == 0
    code, out, err = await gpuctl(control_plane, tmp_path, engine_home, "playbook", "execute", run, *as_a)
    assert code == 0, err
    assert f"run {run}: Succeeded" in out, out
    md = (await admin.get("MachineDeployment", pool, CAPI_NAMESPACE)).body
    assert md["spec"]["replicas"] == 2 and md["status"]["readyReplicas"] == 2
    await audit_intact(tmp_path)


async def test_relabel_mig_submitted_from_the_cli_and_carried_out_by_the_executor(
    admin: RestClient, control_plane: ControlPlane, mig_manager: MigManagerSim, engine_home: str, as_a: list[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    node = unique("relabel-cli")
    await apply_objects(admin, [mig_node_object(node, product="NVIDIA-H100-80GB-HBM3", gpus=2, applied="all-disabled")])
    await wait_nodes_ready(admin, {node})
    async with engine_at(control_plane, tmp_path, engine_home, real=True) as front:
        k = f"relabel-{node}"
        code, out, err = await gpuctl(control_plane, tmp_path, engine_home, "playbook", "run", "relabel-mig",
                                      "-p", f"node={node}", "-p", "profile=all-1g.10gb", "--yes", "--key", k, *as_a)  # fmt: skip
        assert code == 0, err
        assert f"Node/{node}" in out and "awaiting approval" in out, out
        run = run_name("relabel-mig", k)
        assert (await gpuctl(control_plane, tmp_path, engine_home, "playbook", "approve", run, *AS_B))[0] == 0
        async with replica(control_plane, tmp_path, engine_home, "executor-mig") as executor:
            # Its outcome, not the run's phase: the phase is written before execute() has finished (the audit log).
            (outcome,) = await poll(
                lambda: list(executor.executor.executed), timeout_s=120, what=f"the executor to carry out {run}"
            )
            assert outcome.run_id == run and outcome.ok, outcome.message
        assert (await front.store.get(run)).status.phase == "Succeeded"
    labels = (await admin.get("Node", node)).body["metadata"]["labels"]
    assert (labels[MIG_CONFIG_LABEL], labels[MIG_STATE_LABEL]) == ("all-1g.10gb", "success")
    started = [r for r in await records(tmp_path, run) if r.kind.value == "execution_started"]
    assert len(started) == 1 and started[0].actor is not None and started[0].actor.via == "executor"
    await audit_intact(tmp_path)
