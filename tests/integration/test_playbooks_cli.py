"""gpuctl's own playbooks end to end against the real API server, from the CLI: reclaim-idle-gpus (an idle
pod evicted at once), scale-pool (a Cluster API MachineDeployment) submitted, approved and executed with
`gpuctl playbook`, relabel-mig (a MIG node) submitted and approved with `gpuctl playbook` and carried out
by an executor. Their logic's edge cases are
test_scale_pool.py's and test_relabel_mig.py's; adjust-quota's CLI and executor runs are test_engine.py's
and test_executor.py's.

user-a acts (through the admin's `--as`) in team-a and a group that may write what the playbooks declare;
user-b (team-b) approves, as the policy in engine_support says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
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
from testbed.monitoring import Monitoring, ScrapeJob, StaticExporter, exposition_line
from testbed.nodes import gpu_node_object
from testbed.objects import gpu_pod, namespace_object, role, role_binding, rule, unique
from testbed.waiting import poll
from tests.integration.engine_support import audit_intact, cli, cli_flags, engine_at, reclaim_now, records, settings
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


class IdleGpuExporter(StaticExporter):
    """One held GPU at 0 % whose power reading changes at every scrape, as a live GPU's does (a frozen one
    is a hung DCGM: stale, never idle)."""

    def __init__(self, **labels: str) -> None:
        super().__init__([exposition_line("DCGM_FI_DEV_GPU_UTIL", 0, **labels)])
        self.labels = labels
        self.scrapes = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        power = exposition_line("DCGM_FI_DEV_POWER_USAGE", 60 + self.scrapes % 2, **self.labels)
        return web.Response(text="\n".join([*self.lines, power]) + "\n", content_type="text/plain")


async def idle_pod(admin: RestClient, namespace: str, node: str) -> dict[str, str]:
    """Namespace `namespace` where team-a may reclaim, GPU node `node`, and pod idle-0 running there (gone at once
    when evicted); returns the DCGM exporter labels of its one GPU."""
    rules = [
        rule("", ["pods"], ["patch"]),
        rule("events.k8s.io", ["events"], ["create"]),
        rule("", ["pods/eviction"], ["create"]),
    ]
    await apply_objects(admin, [
        namespace_object(namespace),
        role("reclaimer", namespace, rules),
        role_binding("team-a-reclaims", namespace, role="reclaimer", group="team-a"),
        gpu_node_object(node, labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, resources={"nvidia.com/gpu": 8}),
    ])  # fmt: skip
    await wait_nodes_ready(admin, {node})
    pod = gpu_pod("idle-0", namespace, 1, node=node)
    pod["spec"]["terminationGracePeriodSeconds"] = 0  # evicted, gone at once
    await apply_objects(admin, [pod])
    await poll(lambda: admin.get("Pod", "idle-0", namespace), lambda r: r.body.get("status", {}).get("phase") == "Running",
               what="kwok to run idle-0")  # fmt: skip
    return {"gpu": "0", "UUID": f"GPU-{node}-0", "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": node,
            "namespace": namespace, "pod": "idle-0", "container": "main"}  # fmt: skip


async def test_reclaim_idle_gpus_from_the_cli_evicts_an_idle_pod(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    namespace, node = unique("eng-a-reclaim"), unique("reclaim-cli")
    labels = await idle_pod(admin, namespace, node)
    settings(control_plane.kubeconfig(ADMIN), tmp_path, engine_home)
    reclaim_now(tmp_path)
    # The pod's one GPU idle, as the DCGM exporter reports a held GPU, scraped by a Prometheus of its own.
    async with IdleGpuExporter(**labels) as exporter:
        async with Monitoring(tmp_path / "prometheus", jobs=[ScrapeJob("dcgm-exporter", [exporter.url])]) as monitoring:
            # Ten seconds of history (scraped every second), twice the idle window below.
            await poll(lambda: monitoring.query("count_over_time(DCGM_FI_DEV_GPU_UTIL[1m])"),
                       lambda found: bool(found) and float(found[0]["value"][1]) >= 10, what="ten seconds of history")  # fmt: skip
            # `gpuctl playbook` plans from the live picture the config file describes (it has no metrics flags).
            config = tmp_path / "config.yaml"
            config.write_text(
                yaml.safe_dump({"prometheus_url": monitoring.prometheus_url, "idle_window_s": "5s", "refresh_s": "1s"})
            )
            code, out, err = await gpuctl(
                control_plane, tmp_path, engine_home, "playbook", "run", "reclaim-idle-gpus-now", "-p", f"namespace={namespace}",
                "-p", "mode=immediate", "-p", "idle_for=5s", "--yes", "--as", "user-a", "--as-group", "team-a",
                "--config", str(config),
            )  # fmt: skip
    assert code == 0, err
    assert f"Pod/{namespace}/idle-0" in out and "Succeeded" in out, out
    await poll(lambda: admin.get("Pod", "idle-0", namespace), lambda r: r.status == 404, what="idle-0 to be gone")
    await audit_intact(tmp_path)
