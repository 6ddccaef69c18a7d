"""Plans and steps for the engine's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.policy import Scope

REQUESTER = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="cli", detail="laptop")
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def quota_step(namespace: str = "team-a", name: str = "gpus", before: str = "4", after: str = "8") -> Step:
    target = TargetRef(kind="ResourceQuota", name=name, namespace=namespace, uid="u-1", resource_version="41")
    change = Change(field="spec.hard[requests.nvidia.com/gpu]", before=before, after=after)
    return Step(action="set_resourcequota", target=target, changes=(change,), gpus=abs(int(after) - int(before)))


def evict_step(name: str, namespace: str = "team-a", gpus: int = 1) -> Step:
    return Step(action="evict_pods", target=TargetRef(kind="Pod", name=name, namespace=namespace), gpus=gpus)


def quota_plan(*steps: Step, scopes: tuple[Scope, ...] | None = None, playbook: str = "adjust-quota") -> Plan:
    steps = steps or (quota_step(),)
    namespaces = sorted({s.target.namespace for s in steps if s.target.namespace})
    return Plan(
        playbook=playbook,
        parameters={"namespace": "team-a", "quota": 8},
        requester=REQUESTER,
        created_at=T0,
        steps=steps,
        scopes=scopes if scopes is not None else tuple(Scope(kind="namespace", name=n) for n in namespaces),
        locks=tuple(LockTarget(kind="namespace", name=n) for n in namespaces),
    )
