"""A plan: exactly what a playbook run will do, computed before anything is done.

The planner of each playbook reads the live picture (and, where it must, the
API server) and returns a `Plan`: every target with the identity it had when
planned (uid and resourceVersion), every action on it with the value before
and after, the GPUs affected, what was left out and why, and warnings a person
must see before approving. Execution takes a Plan, never a playbook name and
parameters, so it cannot do more than the plan showed.

`Plan.fingerprint` hashes what the plan acts on and does (not when or by whom
it was computed), so an approver approves that exact content and the executor
can prove it executed the same content. That includes the policy scopes it is
authorized in and the targets it locks: an approver's policy check reads them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, computed_field, model_validator

from gpuctl.audit.canonical import canonical_bytes
from gpuctl.identity import Requester
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.policy import Scope

PLAN_VERSION = 1
COMPUTED = frozenset({"fingerprint", "gpus_affected"})  # in a plan's JSON, derived from the rest


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetRef(_Frozen):
    """One Kubernetes object a step acts on, pinned to the version the plan saw."""

    kind: str = Field(description="Pod, Node, ResourceQuota, MachineDeployment, NodePool, ClusterQueue")
    api_version: str = "v1"
    name: str
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


class Change(_Frozen):
    """One field of the target, before and after the step."""

    field: str = Field(description="e.g. 'spec.hard[requests.nvidia.com/gpu]', 'labels[nvidia.com/mig.config]'")
    before: Any = None
    after: Any = None


class Step(_Frozen):
    """One action on one target, in execution order."""

    action: str = Field(description="a built-in action name (see gpuctl.playbooks.spec)")
    target: TargetRef
    changes: tuple[Change, ...] = ()
    gpus: int = Field(0, description="GPUs (whole GPUs plus MIG instances) this step frees, moves or grants")
    detail: str | None = Field(None, description="one line a person reads in the plan, e.g. 'idle 2h10m, 4 GPUs'")


class Skipped(_Frozen):
    """A candidate the planner looked at and left out, with the reason (shown, never silent)."""

    target: TargetRef
    reason: str


class Plan(_Frozen):
    version: int = PLAN_VERSION
    playbook: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    requester: Requester
    created_at: datetime
    snapshot_generation: int | None = Field(None, description="the live picture's generation the plan was computed from")
    steps: tuple[Step, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()
    blocked: tuple[str, ...] = Field((), description="reasons the plan must not run at all (empty when it may)")
    dry_run: Literal["server", "client", "none"] = Field(
        "none", description="server: every write was accepted by the API server with dryRun=All"
    )
    scopes: tuple[Scope, ...] = Field((), description="every policy scope the steps touch (each authorized on its own)")
    locks: tuple[LockTarget, ...] = Field((), description="targets locked while the run executes (one run per target)")

    @model_validator(mode="wrap")
    @classmethod
    def _read_back(cls, data: Any, handler: ModelWrapValidatorHandler[Plan]) -> Plan:
        """A plan read back from its JSON (a PlaybookRun, the audit log) carries its computed fields:
        they are dropped, and a fingerprint that does not match the content is refused."""
        claimed = None
        if isinstance(data, dict) and COMPUTED.intersection(data):
            claimed = data.get("fingerprint")
            data = {key: value for key, value in data.items() if key not in COMPUTED}
        plan = handler(data)
        if claimed is not None and claimed != plan.fingerprint:
            raise ValueError(f"fingerprint {claimed} does not match the plan's content ({plan.fingerprint})")
        return plan

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gpus_affected(self) -> int:
        return sum(step.gpus for step in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        return fingerprint(self.playbook, self.parameters, self.steps, self.scopes, self.locks)

    @property
    def targets(self) -> tuple[TargetRef, ...]:
        seen: dict[str, TargetRef] = {}
        for step in self.steps:
            seen.setdefault(step.target.key, step.target)
        return tuple(seen.values())

    @property
    def runnable(self) -> bool:
        return not self.blocked and bool(self.steps)


def fingerprint(
    playbook: str,
    parameters: dict[str, Any],
    steps: tuple[Step, ...],
    scopes: tuple[Scope, ...] = (),
    locks: tuple[LockTarget, ...] = (),
) -> str:
    """sha256 over the canonical JSON (RFC 8785) of what the plan does (playbook, parameters, steps) and where
    (scopes, locks). Canonical, so the plan's JSON read back from anywhere hashes the same: the API server
    gives a PlaybookRun's 600.0 back as 600, and RFC 8785 writes both as 600."""
    body: dict[str, Any] = {
        "v": PLAN_VERSION,
        "playbook": playbook,
        "parameters": parameters,
        "steps": [step.model_dump(mode="json") for step in steps],
    }
    if scopes or locks:  # a plan without them hashes as before
        body["scopes"] = [scope.model_dump(mode="json") for scope in scopes]
        body["locks"] = [lock.model_dump(mode="json") for lock in locks]
    return "sha256:" + hashlib.sha256(canonical_bytes(body)).hexdigest()
