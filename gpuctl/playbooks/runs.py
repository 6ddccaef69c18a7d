"""PlaybookRuns in the cluster: the shared record of a run (deploy/crds/playbookruns.gpuctl.io.yaml).

The CLI, the TUI, the bot and the executor may run on different machines; they
agree through these objects. What the API server guarantees, we rely on:

- exactly-once creation: a run with an idempotency key is named after the key,
  so a second creation with the same key (another process, a retried Slack
  request) is refused with 409 AlreadyExists — `AlreadyExists` here;
- an immutable spec (a CEL rule in the CRD): the plan approved is the plan run;
- optimistic concurrency on status: `update_status` sends the resourceVersion
  it read, and a concurrent writer makes it fail with `Conflict` (re-read,
  re-decide, retry) instead of silently overwriting an approval.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from gpuctl.errors import NotInstalled
from gpuctl.identity import Frontend, Identity, Requester
from gpuctl.playbooks.acting import AccessReview, ActingClient
from gpuctl.playbooks.kubeapi import JSON, ApiResponse, KubeApi, check, collection_path

GROUP = "gpuctl.io"
VERSION = "v1alpha1"
PLURAL = "playbookruns"
KIND = "PlaybookRun"
CRD_MANIFEST = "deploy/crds/playbookruns.gpuctl.io.yaml"

RunPhase = Literal[
    "Pending", "AwaitingApproval", "Approved", "Denied", "Expired",
    "Running", "Succeeded", "Failed", "Interrupted", "Cancelled", "Undone",
]  # fmt: skip
StepState = Literal["Pending", "Running", "Succeeded", "Failed", "Skipped"]


class _Wire(BaseModel):
    """A part of the custom resource: snake_case here, camelCase in the cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def wire(self) -> JSON:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RunRequester(_Wire):
    user: str = Field(min_length=1)
    groups: tuple[str, ...] = ()
    via: Frontend
    detail: str | None = None

    @classmethod
    def of(cls, requester: Requester) -> RunRequester:
        who = requester.identity
        return cls(user=who.user, groups=who.groups, via=requester.via, detail=requester.detail)

    def requester(self) -> Requester:
        return Requester(identity=Identity(user=self.user, groups=self.groups), via=self.via, detail=self.detail)


class RunSpec(_Wire):
    playbook: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    parameters: dict[str, Any] = Field(default_factory=dict)
    requester: RunRequester
    idempotency_key: str | None = Field(None, min_length=1, max_length=1024)
    plan: dict[str, Any]
    plan_fingerprint: str = Field(min_length=1, max_length=128)


class Approval(_Wire):
    user: str = Field(min_length=1)
    groups: tuple[str, ...] = ()
    via: Frontend | None = None
    decision: Literal["Approved", "Denied"]
    at: datetime
    comment: str | None = None
    plan_fingerprint: str | None = Field(None, max_length=128, description="the plan the approver saw and decided on")


class StepProgress(_Wire):
    name: str = Field(min_length=1)
    target: str | None = None
    state: StepState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None


class Condition(_Wire):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = None
    last_transition_time: datetime
    reason: str
    message: str


class RunStatus(_Wire):
    phase: RunPhase | None = None
    approvals: tuple[Approval, ...] = ()
    steps: tuple[StepProgress, ...] = ()
    result: dict[str, Any] | None = None
    audit_run_id: str | None = None
    conditions: tuple[Condition, ...] = ()


class PlaybookRun(BaseModel):
    """A PlaybookRun as read from the cluster (name, version, spec, status)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    namespace: str
    uid: str
    resource_version: str
    created_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    spec: RunSpec
    status: RunStatus

    @classmethod
    def from_object(cls, obj: JSON) -> PlaybookRun:
        meta = obj["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            resource_version=meta["resourceVersion"],
            created_at=meta["creationTimestamp"],
            labels=meta.get("labels") or {},
            spec=RunSpec.model_validate(obj["spec"]),
            status=RunStatus.model_validate(obj.get("status") or {}),
        )


class RunList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    runs: tuple[PlaybookRun, ...]
    resource_version: str = Field(description="watch from here to see every change after the list")


class RunEvent(BaseModel):
    """A change seen by `watch`; a BOOKMARK carries only a fresher resourceVersion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    run: PlaybookRun | None
    resource_version: str


def run_name(playbook: str, idempotency_key: str) -> str:
    """The name a run with this key gets: one key, one run (per playbook), whoever creates it."""
    return f"{playbook}-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}"


class PlaybookRuns:
    """Typed access to the PlaybookRuns of one namespace, as gpuctl itself or as `acting_as`."""

    def __init__(self, api: KubeApi, namespace: str, *, acting_as: Identity | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.acting_as = acting_as
        self._collection = collection_path(GROUP, VERSION, PLURAL, namespace)

    def _not_installed(self) -> NotInstalled:
        return NotInstalled(
            f"the API server at {self.api.server} does not serve {PLURAL}.{GROUP}/{VERSION}: "
            "the PlaybookRun CRD is not installed",
            hint=f"kubectl apply -f {CRD_MANIFEST} (playbooks that need no approval still run locally without it)",
        )

    def _check(self, response: ApiResponse, *, what: str) -> JSON:
        # A 404 names what is missing (the run, the namespace); one naming nothing means the path itself is not served.
        details = response.body.get("details") or {}
        if response.call.status == 404 and not details.get("name"):
            raise self._not_installed()
        return check(response, what=what)

    async def ensure_installed(self) -> None:
        """Raise NotInstalled unless the API server serves PlaybookRuns (discovery, no object read)."""
        response = await self.api.request("GET", f"/apis/{GROUP}/{VERSION}", acting_as=self.acting_as)
        if response.call.status == 404:
            raise self._not_installed()
        resources = check(response, what=f"discover {GROUP}/{VERSION}").get("resources") or ()
        if not any(r.get("name") == PLURAL for r in resources):
            raise self._not_installed()

    async def create(self, spec: RunSpec, *, labels: dict[str, str] | None = None, dry_run: bool = False) -> PlaybookRun:
        """Create a run; with an idempotency key a duplicate raises AlreadyExists (nothing created)."""
        metadata: JSON = {"namespace": self.namespace, "labels": {**(labels or {}), "gpuctl.io/playbook": spec.playbook}}
        if spec.idempotency_key is not None:
            metadata["name"] = run_name(spec.playbook, spec.idempotency_key)
        else:
            metadata["generateName"] = f"{spec.playbook}-"
        body: JSON = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": spec.wire()}
        response = await self.api.request("POST", self._collection, acting_as=self.acting_as, body=body, dry_run=dry_run)
        what = f"create a {spec.playbook} PlaybookRun in {self.namespace}"
        return PlaybookRun.from_object(self._check(response, what=what))

    async def get(self, name: str) -> PlaybookRun:
        response = await self.api.request("GET", f"{self._collection}/{name}", acting_as=self.acting_as)
        return PlaybookRun.from_object(self._check(response, what=f"get PlaybookRun {self.namespace}/{name}"))

    async def list(self, *, playbook: str | None = None) -> RunList:
        params = {"labelSelector": f"gpuctl.io/playbook={playbook}"} if playbook else None
        response = await self.api.request("GET", self._collection, acting_as=self.acting_as, params=params)
        body = self._check(response, what=f"list PlaybookRuns in {self.namespace}")
        runs = tuple(PlaybookRun.from_object(item) for item in body.get("items") or ())
        return RunList(runs=runs, resource_version=body["metadata"]["resourceVersion"])

    @asynccontextmanager
    async def watch(self, resource_version: str, *, timeout_s: int = 300) -> AsyncIterator[AsyncIterator[RunEvent]]:
        """Changes after `resource_version` (from `list`) until the server ends the watch (≤ timeout_s).

        Raises Gone when that version is too old: list again."""
        params = {"resourceVersion": resource_version}
        async with self.api.watch(self._collection, acting_as=self.acting_as, params=params, timeout_s=timeout_s) as events:
            yield _run_events(events)

    async def update_status(self, run: PlaybookRun, status: RunStatus) -> PlaybookRun:
        """Replace the run's status, only if the run is still at `run.resource_version` (else Conflict)."""
        body: JSON = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": run.name, "namespace": run.namespace, "resourceVersion": run.resource_version},
            "spec": run.spec.wire(),
            "status": status.wire(),
        }
        response = await self.api.request("PUT", f"{self._collection}/{run.name}/status", acting_as=self.acting_as, body=body)
        return PlaybookRun.from_object(self._check(response, what=f"update the status of PlaybookRun {run.namespace}/{run.name}"))


async def _run_events(events: AsyncIterator[JSON]) -> AsyncIterator[RunEvent]:
    async for event in events:
        obj = event["object"]
        version = obj["metadata"]["resourceVersion"]
        if event["type"] == "BOOKMARK":
            yield RunEvent(type="BOOKMARK", run=None, resource_version=version)
        else:
            yield RunEvent(type=event["type"], run=PlaybookRun.from_object(obj), resource_version=version)


async def review_approval(approver: ActingClient, run: PlaybookRun) -> AccessReview:
    """May the approver's identity `approve` this run? The cluster's RBAC answers (custom verb on playbookruns)."""
    return await approver.can_i("approve", PLURAL, group=GROUP, namespace=run.namespace, name=run.name)
