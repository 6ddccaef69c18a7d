"""What the playbook-logic integration tests share: a requester's and gpuctl's
own ActingClients over the operator's connection, the read rights the engine's
service identity holds, a live Snapshot from gpuctl's real Kubernetes source,
plan requests validated against the shipped definitions, a sealed Plan, and a
RunContext with list-appending sinks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from test_kubernetes_source import watching

from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.context import RunContext
from gpuctl.playbooks.kubeapi import ApiCall, KubeApi
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.logic import Clients, Draft, PlanRequest
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Plan
from gpuctl.sources.kube.connect import KubeConnection
from gpuctl.state.store import ClusterStore
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient, apply_objects
from testbed.objects import RBAC
from testbed.waiting import poll

USER_A = Identity(user="user-a", groups=("team-a",))
USER_B = Identity(user="user-b", groups=("team-b",))
CATALOG = load_catalog()

# What the engine's service identity reads for adjust-quota and scale-pool (it writes nothing itself).
OPERATOR_READS = [
    {"apiGroups": [""], "resources": ["resourcequotas", "nodes", "pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["cluster.x-k8s.io"], "resources": ["machinedeployments", "machines", "clusters"], "verbs": ["get", "list"]},
    {"apiGroups": ["karpenter.sh"], "resources": ["nodepools"], "verbs": ["get", "list"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["clusterqueues"], "verbs": ["get", "list"]},
]


def cluster_grant(name: str, group: str, rules: list[dict]) -> list[dict]:
    """A ClusterRole and its ClusterRoleBinding to a group."""
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}],
        },
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator_api(admin: RestClient, operator_connection: KubeConnection) -> KubeApi:
    """The operator's connection, once it may read what these playbooks plan from."""
    await apply_objects(admin, cluster_grant("test:gpuctl-playbook-reads", "gpuctl:operators", OPERATOR_READS))
    api = KubeApi(operator_connection)

    async def may_read() -> bool:
        return (await api.request("GET", "/api/v1/resourcequotas")).ok

    await poll(may_read, what="the operator's read rights to reach RBAC")
    return api


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(control_plane: ControlPlane) -> AsyncIterator[ClusterStore]:
    """gpuctl's real Kubernetes source feeding a store, for the Snapshot a plan is made from."""
    async with watching(control_plane) as (_source, store):
        yield store


async def snapshot_where(store: ClusterStore, ready: Callable[[Snapshot], bool], what: str) -> Snapshot:
    return await poll(store.snapshot, ready, what=what)


def clients(api: KubeApi, requester: Identity) -> Clients:
    return Clients(acting=ActingClient(api, requester), reader=ActingClient(api, None))


def plan_request(playbook: str, params: dict[str, str], identity: Identity, snapshot: Snapshot) -> PlanRequest:
    definition = CATALOG.get(playbook)
    return PlanRequest(
        playbook=definition,
        args=validate_params(definition, params),
        requester=Requester(identity=identity, via="cli"),
        snapshot=snapshot,
        now=datetime.now(UTC),
    )


def seal(draft: Draft, request: PlanRequest) -> Plan:
    """What the engine does with a Draft (the tests' stand-in for the engine's own sealing)."""
    return Plan(
        playbook=request.playbook.name,
        parameters=dict(request.args),
        requester=request.requester,
        created_at=request.now,
        snapshot_generation=request.snapshot.generation,
        steps=tuple(draft.steps),
        skipped=tuple(draft.skipped),
        warnings=tuple(draft.warnings),
        blocked=tuple(draft.blocked),
        dry_run=draft.dry_run,
    )


@dataclass
class Sinks:
    calls: list[tuple[ApiCall, int]] = field(default_factory=list)
    progress: list[tuple[str, int | None]] = field(default_factory=list)

    def context(self, run_clients: Clients, store: ClusterStore, *, deadline_s: float = 300) -> RunContext:
        async def on_call(call: ApiCall, step: int) -> None:
            self.calls.append((call, step))

        async def on_progress(message: str, step: int | None) -> None:
            self.progress.append((message, step))

        async def latest() -> Snapshot:
            return store.snapshot()

        return RunContext(run_clients, datetime.now(UTC) + timedelta(seconds=deadline_s), on_call, on_progress, latest)

    def writes(self) -> list[ApiCall]:
        return [call for call, _ in self.calls if call.method == "PATCH" or call.method == "POST"]


def seal_undo(draft: Draft, plan: Plan) -> Plan:
    """An undo Draft sealed as the engine would: the original run's playbook, parameters and requester."""
    return Plan(
        playbook=plan.playbook,
        parameters=plan.parameters,
        requester=plan.requester,
        created_at=datetime.now(UTC),
        steps=tuple(draft.steps),
        warnings=tuple(draft.warnings),
        blocked=tuple(draft.blocked),
        dry_run=draft.dry_run,
    )
