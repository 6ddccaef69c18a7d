"""PlaybookRuns on the real API server: exactly-once creation by idempotency key,
an immutable spec, optimistic concurrency on status, the `approve` verb, what
`kubectl get playbookruns` shows, and a clear error when the CRD is missing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuctl.errors import AlreadyExists, Conflict, NotFound, NotInstalled
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.runs import (
    GROUP,
    PLURAL,
    VERSION,
    Approval,
    PlaybookRuns,
    RunRequester,
    RunSpec,
    RunStatus,
    review_approval,
)
from gpuctl.sources.kube.connect import KubeConnection
from testbed.kube import RestClient, apply_objects, install_crds
from testbed.objects import role_binding
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

# What kubectl asks for to print a list: the server renders the CRD's printer columns.
AS_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
REQUESTER = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="slack", detail="U123")


def _spec(key: str | None = None) -> RunSpec:
    return RunSpec(
        playbook="adjust-quota",
        parameters={"namespace": "team-a", "gpus": 8},
        requester=RunRequester.of(REQUESTER),
        idempotency_key=key,
        plan={"actions": [{"patch": "resourcequotas team-a/gpus", "before": 4, "after": 8}]},
        plan_fingerprint="sha256:0123abcd",
    )


@pytest.fixture
def runs(operator_connection: KubeConnection, playbookrun_crd: Path, gpuctl_namespace: str) -> PlaybookRuns:
    return PlaybookRuns(KubeApi(operator_connection), gpuctl_namespace)


async def _can_list(runs: PlaybookRuns) -> bool:
    return (await runs.api.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{runs.namespace}/{PLURAL}")).ok


async def test_one_idempotency_key_creates_one_run_across_processes(
    runs: PlaybookRuns, operator_connection: KubeConnection
) -> None:
    # Two "processes": separate clients racing with the same key (a retried Slack request).
    other = PlaybookRuns(KubeApi(operator_connection), runs.namespace)
    outcomes = await asyncio.gather(
        runs.create(_spec("slack:req-42")), other.create(_spec("slack:req-42")), return_exceptions=True
    )
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(created) == 1 and len(refused) == 1
    assert isinstance(refused[0], AlreadyExists)
    with pytest.raises(AlreadyExists):
        await runs.create(_spec("slack:req-42"))

    listed = await runs.list(playbook="adjust-quota")
    assert [r.name for r in listed.runs] == [created[0].name]
    run = listed.runs[0]
    assert run.spec == _spec("slack:req-42")
    assert run.spec.requester.requester() == REQUESTER

    # Without a key every creation is a new run.
    first, second = await runs.create(_spec()), await runs.create(_spec())
    assert first.name != second.name and first.name.startswith("adjust-quota-")
    assert len((await runs.list()).runs) == 3

    with pytest.raises(NotFound):
        await runs.get("adjust-quota-nonexistent")


async def test_the_spec_is_immutable_and_the_schema_enforced(runs: PlaybookRuns) -> None:
    run = await runs.create(_spec("alert:abc@2026-11-30T10:00"))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{runs.namespace}/{PLURAL}/{run.name}"
    edit = await runs.api.request(
        "PATCH", path, body={"spec": {"plan": {"actions": []}}}, content_type="application/merge-patch+json"
    )
    assert edit.call.status == 422
    assert "spec is immutable" in (edit.call.message or "")

    bad_phase = await runs.api.request(
        "PATCH", f"{path}/status", body={"status": {"phase": "Approvedish"}}, content_type="application/merge-patch+json"
    )
    assert bad_phase.call.status == 422 and "Unsupported value" in (bad_phase.call.message or "")
    bad = _spec().wire() | {"requester": {"user": "user-a", "via": "carrier-pigeon"}}
    created = await runs.api.request(
        "POST",
        f"/apis/{GROUP}/{VERSION}/namespaces/{runs.namespace}/{PLURAL}",
        body={"apiVersion": f"{GROUP}/{VERSION}", "kind": "PlaybookRun", "metadata": {"generateName": "x-"}, "spec": bad},
    )
    assert created.call.status == 422 and "carrier-pigeon" in (created.call.message or "")
    assert (await runs.get(run.name)).spec == run.spec


async def test_status_updates_are_optimistic(runs: PlaybookRuns) -> None:
    run = await runs.create(_spec("slack:req-43"))
    waiting = await runs.update_status(run, RunStatus(phase="AwaitingApproval", audit_run_id="run-1"))
    assert waiting.status.phase == "AwaitingApproval"
    assert waiting.resource_version != run.resource_version

    approval = Approval(user="user-b", groups=("team-b",), via="slack", decision="Approved", at=datetime.now(UTC))
    with pytest.raises(Conflict):  # written from a stale read: refused, not overwritten
        await runs.update_status(run, RunStatus(phase="Approved", approvals=(approval,)))
    assert (await runs.get(run.name)).status.phase == "AwaitingApproval"

    decided = waiting.status.model_copy(update={"phase": "Approved", "approvals": (approval,)})
    approved = await runs.update_status(waiting, decided)
    assert approved.status.approvals == (approval,)
    assert approved.status.audit_run_id == "run-1"
    assert approved.spec == run.spec


async def test_approving_is_a_verb_the_cluster_grants(
    admin: RestClient, runs: PlaybookRuns, operator_connection: KubeConnection
) -> None:
    run = await runs.create(_spec("slack:req-44"))
    api = KubeApi(operator_connection)
    approver = ActingClient(api, Identity(user="user-b", groups=("team-b",)))
    bystander = ActingClient(api, Identity(user="user-c", groups=("team-c",)))
    approvers = role_binding(
        "team-b-approves", runs.namespace, role="gpuctl:playbookrun-approver", group="team-b", cluster_role=True
    )
    await apply_objects(admin, [approvers])

    async def approver_allowed() -> bool:
        return (await review_approval(approver, run)).allowed

    await poll(approver_allowed, timeout_s=10, what="the approver binding to reach RBAC")
    review = await review_approval(bystander, run)
    assert not review.allowed
    assert review.explain().startswith(f"user-c (team-c) may not approve playbookruns.gpuctl.io {run.name} in namespace")
    # Approving grants no other write.
    assert not (await approver.can_i("update", PLURAL, group=GROUP, namespace=runs.namespace, subresource="status")).allowed


async def test_watch_sees_creation_and_progress(runs: PlaybookRuns) -> None:
    listed = await runs.list()
    async with runs.watch(listed.resource_version, timeout_s=30) as events:
        run = await runs.create(_spec("alert:def@2026-11-30T11:00"))
        await runs.update_status(run, RunStatus(phase="Running"))
        seen = []
        async for event in events:
            if event.type == "BOOKMARK":
                continue
            assert event.run is not None
            seen.append((event.type, event.run.name, event.run.status.phase))
            if len(seen) == 2:
                break
    assert seen == [("ADDED", run.name, None), ("MODIFIED", run.name, "Running")]


async def test_kubectl_get_shows_playbook_phase_requester_age(admin: RestClient, runs: PlaybookRuns) -> None:
    run = await runs.create(_spec("slack:req-45"))
    await runs.update_status(run, RunStatus(phase="AwaitingApproval"))
    table = await admin.request(
        "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{runs.namespace}/{PLURAL}", headers={"Accept": AS_TABLE}
    )
    assert table.body["kind"] == "Table"
    columns = [(c["name"], c["priority"]) for c in table.body["columnDefinitions"]]
    assert columns == [("Name", 0), ("Playbook", 0), ("Phase", 0), ("Requester", 0), ("Via", 1), ("Age", 0)]
    (row,) = table.body["rows"]
    assert row["cells"][:5] == [run.name, "adjust-quota", "AwaitingApproval", "user-a", "slack"]


async def test_a_missing_crd_says_what_to_install(admin: RestClient, runs: PlaybookRuns, playbookrun_crd: Path) -> None:
    """Runs last in this module: it removes the CRD, then puts it back for later tests."""
    await runs.ensure_installed()
    crd = f"{PLURAL}.{GROUP}"
    try:
        await admin.delete("CustomResourceDefinition", crd)

        async def discovery_gone() -> bool:  # answered with a plain-text "404 page not found"
            return (await runs.api.request("GET", f"/apis/{GROUP}/{VERSION}")).call.status == 404

        await poll(discovery_gone, what="the API server to stop serving PlaybookRuns")
        with pytest.raises(NotInstalled) as missing:
            await runs.ensure_installed()
        assert "deploy/crds/playbookruns.gpuctl.io.yaml" in str(missing.value)
        with pytest.raises(NotInstalled):
            await runs.list()
        with pytest.raises(NotInstalled):
            await runs.create(_spec("slack:req-46"))
        with pytest.raises(NotInstalled):
            await runs.get("anything")
    finally:
        await poll(lambda: admin.get("CustomResourceDefinition", crd), lambda r: r.status == 404, what="the CRD to be deleted")
        await install_crds(admin, playbookrun_crd)
    await poll(lambda: _can_list(runs), what="PlaybookRuns to be served again")

