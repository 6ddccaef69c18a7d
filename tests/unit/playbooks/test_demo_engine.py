"""The real engine in demo mode: `open_engine(--demo settings, cluster=...)` runs each built-in playbook
against the simulated API, and the demo's snapshot follows (pods gone, MIG layout, nodes, quota).

No test bed: the demo's simulated cluster is the product under test here. The same playbooks against the
real API server are tests/integration (test_engine, test_reclaim, test_relabel_mig, ...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpuctl.audit.backend import open_audit
from gpuctl.audit.verify import verify
from gpuctl.config import Settings
from gpuctl.errors import PlanStale, PolicyDenied, RunRefused
from gpuctl.identity import Requester
from gpuctl.model import Gpu, Snapshot
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.execution import Outcome
from gpuctl.service import Cluster, open_cluster
from gpuctl.sim import build_fleet
from gpuctl.sim.api.access import DEMO_LEAD, DEMO_USER
from gpuctl.sim.world import SimWorld
from gpuctl.sources.demo import DemoSource
from testbed.waiting import poll

ME = Requester(identity=DEMO_USER, via="tui")
LEAD = Requester(identity=DEMO_LEAD, via="tui")
MIG_NODE = "h100-mig-vtp6b"  # all-3g.40gb, running the llm-chat pods behind their PodDisruptionBudget


@dataclass
class Demo:
    engine: Engine
    cluster: Cluster
    world: SimWorld
    audit: Path

    def snapshot(self) -> Snapshot:
        return self.cluster.snapshot()


@asynccontextmanager
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    """A demo cluster without churn (the same pods throughout), with quick simulated controllers, and its engine."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    audit = tmp_path / "audit.sqlite"
    settings = Settings(config_file=config, demo=True, refresh_s=2.0, audit=str(audit))
    world = SimWorld(build_fleet(7), 7, mig_reconfigure_s=0.2, node_launch_s=0.2)
    async with open_cluster(settings, sources=[DemoSource(tick_s=0.05, churn=False, world=world)]) as cluster:
        await cluster.wait_ready(10)
        async with open_engine_for(settings, cluster) as engine:
            yield Demo(engine, cluster, world, audit)


@asynccontextmanager
async def open_engine_for(settings: Settings, cluster: Cluster) -> AsyncIterator[Engine]:
    from gpuctl.playbooks.service import open_engine

    async with open_engine(settings, cluster=cluster) as engine:
        yield engine


async def run(demo: Demo, playbook: str, params: dict[str, str], *, key: str) -> Outcome:
    """Plan → submit → (approved by the demo's lead where needed) → execute, as the front ends do."""
    plan = await demo.engine.plan(ME, playbook, params, key=key)
    assert not plan.blocked, plan.blocked
    submitted = await demo.engine.submit(plan, key=key)
    if submitted.needs_approval:
        assert submitted.phase == "AwaitingApproval"
        with pytest.raises(PolicyDenied):
            await demo.engine.approve(ME, submitted.run_id)  # never the requester, in the demo too
        await demo.engine.approve(LEAD, submitted.run_id)
    outcome = await demo.engine.execute_submitted(submitted, by=ME)
    assert outcome.ok and outcome.verification is not None and outcome.verification.ok, outcome
    return outcome


async def test_reclaim_evicts_idle_pods_and_the_snapshot_frees_their_gpus(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        before = d.snapshot()
        idle = {p.key: p for p in before.pods if p.idle}
        alice = next(p for p in before.pods if p.name == "jupyter-alice")
        assert alice.key in idle and alice.uid
        outcome = await run(d, "reclaim-idle-gpus", {"mode": "immediate", "idle_for": "30m"}, key="reclaim")
        assert outcome.phase == "Succeeded" and outcome.message.startswith("evicted 5 pod(s)")
        after = d.snapshot()
        assert not {p.uid for p in after.pods} & {p.uid for p in idle.values()}

        def alice_gpus(snap: Snapshot) -> list[Gpu]:
            return [g for g in snap.gpus if g.node == alice.node and g.key in set(alice.gpu_keys)]

        # A GPU's holder comes from the readings (the exporter's pod labels): free at the next tick's batch.
        freed = alice_gpus(await poll(d.snapshot, lambda s: all(g.pod is None for g in alice_gpus(s)),
                                      timeout_s=20, what="jupyter-alice's GPUs without a holder"))  # fmt: skip
        assert len(freed) == 2
        # Controllers recreate their pods (pending until the scheduler places them); a bare notebook is gone for good.
        assert any(p.name.startswith("reranker-") and p.uid not in {q.uid for q in idle.values()} for p in after.pods)
        assert not any(p.name == "jupyter-alice" for p in after.pods)
        async with open_audit(str(d.audit), create=False) as log:
            assert (await verify(log)).ok
            assert [r.kind.value for r in await log.records(run_id=outcome.run_id)][-1] == "completed"


async def test_relabel_mig_drains_the_node_and_the_mig_manager_repartitions_it(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        node = next(n for n in d.snapshot().nodes if n.name == MIG_NODE)
        assert node.mig_config == "all-3g.40gb" and node.mig_allocatable == {"nvidia.com/mig-3g.40gb": 16}
        await run(d, "relabel-mig", {"node": MIG_NODE, "profile": "all-1g.10gb", "drain": "true"}, key="mig")
        after = d.snapshot()
        node = next(n for n in after.nodes if n.name == MIG_NODE)
        assert (node.mig_config, node.mig_config_state, node.cordoned) == ("all-1g.10gb", "success", False)
        assert node.mig_allocatable == {"nvidia.com/mig-1g.10gb": 56}
        assert sorted({g.mig_profile for g in after.gpus if g.node == MIG_NODE}) == ["1g.10gb"]


async def test_scale_pool_raises_the_limit_and_karpenter_launches_nodes_for_the_pending_pods(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        before = d.snapshot()
        pending = [p.key for p in d.world.fleet.pods if p.pool == "a100-train" and p.node is None]
        assert len(pending) == 2 and sum(n.pool == "a100-train" for n in before.nodes) == 4
        await run(d, "scale-pool", {"pool": "a100-train", "gpu_limit": "48"}, key="scale")

        def placed(snap: Snapshot) -> bool:
            return all(p.node for p in snap.pods if p.key in pending)

        after = await poll(d.snapshot, placed, timeout_s=20, what="the pending a100 pods scheduled on new nodes")
        new = {n.name for n in after.nodes if n.pool == "a100-train"} - {n.name for n in before.nodes}
        assert len(new) == 2 and {p.node for p in after.pods if p.key in pending} == new


async def test_adjust_quota_changes_the_namespace_quota(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        assert next(n for n in d.snapshot().namespaces if n.name == "team-a").gpu_quota_hard == 10
        await run(d, "adjust-quota", {"namespace": "team-a", "quota": "14"}, key="quota")
        assert next(n for n in d.snapshot().namespaces if n.name == "team-a").gpu_quota_hard == 14
        assert d.world.namespace("team-a").gpu_quota_hard == 14  # type: ignore[union-attr]


async def test_refusals_say_what_a_real_cluster_would(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        below = await d.engine.plan(ME, "adjust-quota", {"namespace": "team-a", "quota": "4"}, key="below")
        assert below.blocked == (
            "4 is below the 9 in use: running pods would keep running but every new one would be refused; "
            "pass force=true to set it anyway",
        )
        with pytest.raises(RunRefused):
            await d.engine.submit(below, key="below")

        # Spend the llm-chat budget: relabelling their node must wait for it (the Eviction API's 429, retried).
        chat = sorted(p.key for p in d.world.fleet.pods if p.name.startswith("llm-chat") and p.node == MIG_NODE)
        d.world.evict(chat[0])
        plan = await d.engine.plan(ME, "relabel-mig", {"node": MIG_NODE, "profile": "all-1g.10gb", "drain": "true"}, key="pdb")
        assert any(
            f"{chat[1]}: a PodDisruptionBudget refuses its eviction now (The disruption budget llm-chat-pdb needs" in w
            for w in plan.warnings
        ), plan.warnings

        # A quota someone else changed after the plan: the run is refused, nothing is written.
        plan = await d.engine.plan(ME, "adjust-quota", {"namespace": "team-a", "quota": "14"}, key="stale")
        submitted = await d.engine.submit(plan, key="stale")
        await d.engine.approve(LEAD, submitted.run_id)
        d.world.set_quota("team-a", {"requests.nvidia.com/gpu": 12})
        with pytest.raises(PlanStale, match=r"spec.hard\[requests.nvidia.com/gpu\] is 12 now, the plan saw 10"):
            await d.engine.execute_submitted(submitted, by=ME)
        assert d.world.namespace("team-a").gpu_quota_hard == 12  # type: ignore[union-attr]


async def test_the_demo_engine_defaults_to_the_demo_policy_and_a_temporary_audit_log(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    settings = Settings(config_file=config, demo=True, refresh_s=2.0)
    async with open_cluster(settings) as cluster, open_engine_for(settings, cluster) as engine:
        assert engine.own == DEMO_USER
        location = Path(engine.audit.location)
        assert location.parent.name.startswith("gpuctl-demo-") and await asyncio.to_thread(location.exists)
        plan = await engine.plan(ME, "adjust-quota", {"namespace": "team-b", "quota": "20"}, key="k")
        assert (await engine.submit(plan, key="k")).approvers == ("role demo-lead (user demo-lead, group demo:leads)",)
    assert not await asyncio.to_thread(location.parent.exists)


async def test_a_runs_view_follows_runs_live_through_a_watch(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        runs = d.engine.store.runs
        listed = await runs.list()
        assert listed.runs == ()
        plan = await d.engine.plan(ME, "adjust-quota", {"namespace": "team-b", "quota": "20"}, key="watched")
        submitted = await d.engine.submit(plan, key="watched")
        await d.engine.approve(LEAD, submitted.run_id)
        seen: list[tuple[str, str | None]] = []
        async with runs.watch(listed.resource_version, timeout_s=5) as events:
            async for event in events:
                assert event.run is not None and event.run.name == submitted.run_id
                seen.append((event.type, event.run.status.phase))
                if event.run.status.phase == "Approved":
                    break
        assert seen == [("ADDED", None), ("MODIFIED", "AwaitingApproval"), ("MODIFIED", "Approved")]


async def test_reclaim_with_pods_plans_exactly_those_and_says_why_for_the_rest(tmp_path: Path) -> None:
    async with demo(tmp_path) as d:
        before = d.snapshot()
        idle = sorted((p for p in before.pods if p.idle), key=lambda p: p.key)  # the 5 the test above evicts
        busy = next(p for p in before.pods if p.phase == "Running" and not p.idle and p.util_pct and p.util_pct > 50)
        assert len(idle) >= 3, "the demo fleet has idle pods"
        wanted = [idle[0].key, idle[1].key]
        pods = ",".join([*wanted, busy.key, "team-x/no-such-pod"])
        plan = await d.engine.plan(ME, "reclaim-idle-gpus", {"mode": "immediate", "idle_for": "30m", "pods": pods}, key="k")
        assert plan.parameters["pods"] == pods
        evicted = sorted(f"{s.target.namespace}/{s.target.name}" for s in plan.steps if s.action == "evict_pods")
        assert evicted == wanted  # never another idle pod, though the others qualify (the test above evicts them)
        why = {f"{s.target.namespace}/{s.target.name}": s.reason for s in plan.skipped}
        assert set(why) == {busy.key, "team-x/no-such-pod"}
        assert why[busy.key].startswith("not reclaimable: ") and "is busy" in why[busy.key]
        assert why["team-x/no-such-pod"] == "not reclaimable: no such pod"
