"""What the engine's integration tests share: a minimal adjust-quota logic, catalogs, policy, settings.

`QuotaLogic` is a test-only PlaybookLogic (adjust-quota for namespace
ResourceQuotas only) so the engine is tested on its own: it sets
`spec.hard[requests.<resource>]` on every ResourceQuota of the namespace that
has it, one step per quota, with a server-side dry run when planning. A `gate`
(awaited before each step's write) lets a test hold a run mid-execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from gpuctl.audit.backend import open_audit
from gpuctl.audit.records import AuditRecord
from gpuctl.cli import main
from gpuctl.clock import Clock, utcnow
from gpuctl.config import Settings, load_settings
from gpuctl.errors import GpuctlError, NotFound
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.kubeapi import ObjectRef, check
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import (
    Check,
    Clients,
    Draft,
    ExecContext,
    PlanRequest,
    Report,
    StepOutcome,
    Verification,
)
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.policy import Scope
from gpuctl.playbooks.registry import Registry
from gpuctl.playbooks.service import open_engine
from testbed.controlplane import ADMIN, OPERATOR, ControlPlane
from testbed.controlplane import Identity as Cert
from testbed.gpu_operator import OPERATOR_NAMESPACE
from testbed.kube import RestClient, apply_objects
from testbed.objects import namespace_object, role, role_binding, rule, unique
from testbed.waiting import poll

QUOTA_KEY = "requests.nvidia.com/gpu"
USER_A = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="slack", detail="U0A")
USER_B = Requester(identity=Identity(user="user-b", groups=("team-b",)), via="slack", detail="U0B")
APPROVED = "adjust-quota"  # the shipped definition: approval required, reversible
NOW = "adjust-quota-now"  # the same, without approval (runs locally without the CRD)
Gate = Callable[[int], Awaitable[None]]


def _ref(target: TargetRef) -> ObjectRef:
    return ObjectRef(plural="resourcequotas", namespace=target.namespace, name=target.name)


class QuotaLogic:
    def __init__(self, name: str = APPROVED, gate: Gate | None = None) -> None:
        self.name = name
        self.gate = gate

    async def plan(self, request: PlanRequest, clients: Clients) -> Draft:
        namespace = str(request.args["namespace"])
        key = f"requests.{request.args['resource']}"
        after = str(request.args["quota"])
        listed = await clients.reader.api.request("GET", f"/api/v1/namespaces/{namespace}/resourcequotas")
        draft = Draft(scopes=[Scope(kind="namespace", name=namespace)], locks=[LockTarget(kind="namespace", name=namespace)])
        for quota in check(listed, what=f"list resourcequotas in {namespace}").get("items") or ():
            meta, hard = quota["metadata"], quota["spec"].get("hard") or {}
            if key not in hard:
                continue
            target = TargetRef(kind="ResourceQuota", name=meta["name"], namespace=namespace, uid=meta["uid"],
                               resource_version=meta["resourceVersion"])  # fmt: skip
            await clients.acting.patch(_ref(target), {"spec": {"hard": {key: after}}}, dry_run=True)
            change = Change(field=f"spec.hard[{key}]", before=hard[key], after=after)
            draft.steps.append(Step(action="set_resourcequota", target=target, changes=(change,),
                                    gpus=abs(int(after) - int(hard[key]))))  # fmt: skip
        draft.dry_run = "server"
        return draft

    async def stale(self, plan: Plan, clients: Clients) -> list[str]:
        reasons = []
        for step in plan.steps:
            try:
                quota = (await clients.reader.get(_ref(step.target))).object
            except NotFound:
                reasons.append(f"{step.target.key} is gone")
                continue
            if quota["metadata"]["uid"] != step.target.uid:
                reasons.append(f"{step.target.key} was replaced")
            for change in step.changes:
                now = quota["spec"]["hard"].get(change.field.removeprefix("spec.hard[").removesuffix("]"))
                if now != change.before:
                    reasons.append(f"{step.target.key} {change.field} is {now} now; the plan was made when it was {change.before}")
        return reasons

    async def execute(self, plan: Plan, ctx: ExecContext) -> Report:
        outcomes = []
        for index, step in enumerate(plan.steps):
            if self.gate is not None:
                await self.gate(index)
            await ctx.progress(f"setting {step.target.key}", step=index)
            hard = {c.field.removeprefix("spec.hard[").removesuffix("]"): c.after for c in step.changes}
            try:
                result = await ctx.clients.acting.patch(_ref(step.target), {"spec": {"hard": hard}})
            except GpuctlError as e:
                outcomes.append(StepOutcome(index=index, status="failed", message=str(e)))
                continue
            await ctx.record(result.call, step=index)
            outcomes.append(StepOutcome(index=index, status="done", message=f"{step.target.key} set", calls=(result.call,)))
        return Report(outcomes=tuple(outcomes))

    async def verify(self, plan: Plan, report: Report, ctx: ExecContext) -> Verification:
        checks = []
        for step in plan.steps:
            hard = (await ctx.clients.reader.get(_ref(step.target))).object["spec"]["hard"]
            for change in step.changes:
                now = hard.get(change.field.removeprefix("spec.hard[").removesuffix("]"))
                checks.append(Check(name=f"{step.target.key} {change.field}", ok=now == change.after, detail=f"is {now}"))
        return Verification(checks=tuple(checks))

    def undo(self, plan: Plan, report: Report) -> Draft | None:
        done = {o.index for o in report.outcomes if o.status == "done"}
        steps = [
            step.model_copy(update={
                "target": step.target.model_copy(update={"resource_version": None}),
                "changes": tuple(Change(field=c.field, before=c.after, after=c.before) for c in step.changes),
            })
            for index, step in enumerate(plan.steps) if index in done
        ]  # fmt: skip
        return Draft(steps=steps, scopes=list(plan.scopes), locks=list(plan.locks)) if steps else None


def write_playbooks(directory: Path) -> Path:
    """A site playbooks folder with adjust-quota-now: the shipped adjust-quota without approval."""
    text = (files("gpuctl.playbooks") / "builtin" / "adjust-quota.yaml").read_text(encoding="utf-8")
    now = text.replace("name: adjust-quota", f"name: {NOW}").replace("  required: true\n  expires_after: 8h", "  required: false")
    assert now != text
    folder = directory / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / f"{NOW}.yaml").write_text(now)
    return folder


def registry(gate: Gate | None = None) -> Registry:
    return Registry(logics={APPROVED: QuotaLogic(APPROVED, gate), NOW: QuotaLogic(NOW, gate)})


# Test namespaces are named eng-a-… and eng-b-…: the policy scopes the teams by those prefixes (and pools not at all).
POLICY: dict[str, Any] = {
    "roles": {
        "team-a-operator": {"groups": ["team-a"], "run": ["adjust-quota*"], "namespaces": ["eng-a-*"]},
        "team-b-operator": {"groups": ["team-b"], "run": ["adjust-quota*"], "namespaces": ["eng-b-*"]},
        "team-b-approver": {"groups": ["team-b"], "approve": ["adjust-quota*"], "namespaces": ["eng-a-*", "eng-b-*"]},
        "team-a-reclaimer": {"groups": ["team-a"], "run": ["reclaim-idle-gpus*"], "namespaces": ["eng-a-*"]},
        # The node playbooks (tests/integration/test_playbooks_cli.py): team a resizes and repartitions, team b approves.
        "team-a-pools": {"groups": ["team-a"], "run": ["relabel-mig", "scale-pool"], "pools": ["*"]},
        "team-b-pool-approver": {"groups": ["team-b"], "approve": ["relabel-mig", "scale-pool"], "pools": ["*"]},
        "platform": {"users": ["testbed-admin"], "act_as": {"users": ["user-*"], "groups": ["team-*"]}},
    },
    "unmapped": "read_only",
}


def write_policy(directory: Path) -> Path:
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path


def settings(kubeconfig: Path, directory: Path, namespace: str, *, audit: str | None = None, **more: Any) -> Settings:
    """Settings for an engine on the test bed: its kubeconfig, and in `directory` the test policy, the
    site playbook adjust-quota-now and the audit log (unless `audit` names another, e.g. PostgreSQL)."""
    return load_settings(
        kubeconfig=kubeconfig,
        policy=write_policy(directory),
        playbooks_dir=write_playbooks(directory),
        audit=audit or str(directory / "audit.sqlite"),
        gpuctl_namespace=namespace,
        **more,
    )


# --- the test bed ---------------------------------------------------------------------------------


def _quota(name: str, namespace: str, gpus: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": namespace},
            "spec": {"hard": {QUOTA_KEY: str(gpus)}}}  # fmt: skip


async def team_namespace(admin: RestClient, engine: Engine, team: str, *, quotas: int = 1, grant: bool = True) -> str:
    """A fresh namespace eng-<team>-… with `quotas` GPU quotas of 4; with `grant`, the team may edit them."""
    namespace = unique(f"eng-{team}")
    objects = [namespace_object(namespace), *(_quota(f"gpus-{i}", namespace, 4) for i in range(quotas))]
    if grant:
        objects += [
            role("quota-editor", namespace, [rule("", ["resourcequotas"], ["get", "list", "patch"])]),
            role_binding("team-edits-quotas", namespace, role="quota-editor", group=f"team-{team}"),
        ]
    await apply_objects(admin, objects)
    member = Identity(user=f"user-{team}", groups=(f"team-{team}",))

    async def settled() -> bool:
        allowed = (await engine.acting_client(member).can_i("patch", "resourcequotas", namespace=namespace)).allowed
        return allowed == grant

    await poll(settled, timeout_s=10, what=f"RBAC for team {team} in {namespace}")
    return namespace


def run_grants(namespace: str) -> list[dict[str, Any]]:
    """RoleBindings in gpuctl's `namespace`: teams a and b may submit runs there, team b may approve them."""
    return [
        role_binding("requesters-a", namespace, role="gpuctl:playbookrun-requester", group="team-a", cluster_role=True),
        role_binding("requesters-b", namespace, role="gpuctl:playbookrun-requester", group="team-b", cluster_role=True),
        role_binding("approvers-b", namespace, role="gpuctl:playbookrun-approver", group="team-b", cluster_role=True),
    ]


def operator_read_grants() -> list[dict[str, Any]]:
    """The service identity reads cluster-wide (deploy/rbac gpuctl:reader) and the MIG manager's ConfigMaps
    in the GPU Operator's namespace (gpuctl:mig-config-reader), as an installation binds them (the ClusterRoles
    come from deploy/rbac)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "gpuctl:reader-operators"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gpuctl:reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gpuctl:operators"}],
    }
    mig_configs = role_binding("gpuctl:mig-config-reader-operators", OPERATOR_NAMESPACE, role="gpuctl:mig-config-reader",
                               group="gpuctl:operators", cluster_role=True)  # fmt: skip
    return [binding, namespace_object(OPERATOR_NAMESPACE), mig_configs]


def reclaim_now(directory: Path) -> Path:
    """Site playbook reclaim-idle-gpus-now in `directory`/playbooks (returned): the shipped reclaim-idle-gpus for
    pods and idle streaks of seconds (a test's Prometheus has no 30 minutes of history, and its pods are not 30
    minutes old)."""
    text = (files("gpuctl.playbooks") / "builtin" / "reclaim-idle-gpus.yaml").read_text(encoding="utf-8")
    now = text.replace("name: reclaim-idle-gpus", "name: reclaim-idle-gpus-now").replace("min: 30m", "min: 1s")
    now = now.replace("min_pod_age: 30m", "min_pod_age: 1s")
    assert now.count("1s") == 2
    folder = directory / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / "reclaim-idle-gpus-now.yaml").write_text(now)
    return folder


async def hard(admin: RestClient, namespace: str, name: str = "gpus-0") -> str:
    return str((await admin.get("ResourceQuota", name, namespace)).body["spec"]["hard"][QUOTA_KEY])


@contextlib.asynccontextmanager
async def engine_at(
    plane: ControlPlane, directory: Path, namespace: str, *, gate: Gate | None = None, host: str = "test",
    identity: Cert = OPERATOR, kubeconfig: Path | None = None, real: bool = False, clock: Clock = utcnow,
    audit: str | None = None, **more: Any,
) -> AsyncIterator[Engine]:  # fmt: skip
    """An engine as `identity` (the service identity by default) or as `kubeconfig`'s (a ServiceAccount token's,
    say), its audit log (or `audit`) and policy in `directory`; the playbooks' logic is QuotaLogic, or with
    `real` gpuctl's own modules; `more`: other settings."""
    config = settings(kubeconfig or plane.kubeconfig(identity), directory, namespace, audit=audit, **more)
    logic = Registry() if real else registry(gate)
    async with open_engine(config, registry=logic, host=host, lock_wait_s=1.0, clock=clock) as engine:
        yield engine


async def records(directory: Path, run_id: str) -> list[AuditRecord]:
    async with open_audit(str(directory / "audit.sqlite"), create=False) as log:
        return await log.records(run_id=run_id)


def kinds(found: list[AuditRecord]) -> list[str]:
    return [r.kind.value for r in found]


def cli_flags(plane: ControlPlane, directory: Path, namespace: str, identity: Cert = ADMIN) -> list[str]:
    """The flags that point `gpuctl playbook ...` at the test bed, as `engine_at` sees it."""
    return ["--kubeconfig", str(plane.kubeconfig(identity)), "--policy", str(directory / "policy.yaml"),
            "--audit", str(directory / "audit.sqlite"), "--gpuctl-namespace", namespace,
            "--playbooks-dir", str(directory / "playbooks")]  # fmt: skip


def cli(*args: str, gate: Gate | None = None, real: bool = False) -> tuple[int, str, str]:
    """`gpuctl ARGS` in this process with the test logic (or, `real`, gpuctl's own); (exit code, stdout,
    stderr). Call it in a thread."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err, registry=None if real else registry(gate))
    return code, out.getvalue(), err.getvalue()


async def audit_intact(directory: Path) -> None:
    """`gpuctl audit verify` passes on the log in `directory`."""
    code, out, err = await asyncio.to_thread(cli, "audit", "verify", "--audit", str(directory / "audit.sqlite"))
    assert code == 0, err
    assert out.startswith("intact:")


def key() -> str:
    return f"test:{uuid.uuid4()}"
