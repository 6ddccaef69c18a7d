"""Every change gpuctl makes to the cluster for a person: made AS that person.

An `ActingClient` impersonates one identity (Impersonate-User plus one
Impersonate-Group header per group, see kubeapi.py), so the cluster's RBAC
and admission decide each write exactly as if the person had made it, and the
cluster's audit log names them. The service identity only needs `impersonate`.
With `identity=None` it acts with the connection's own credentials instead
(`gpuctl playbook run` on a laptop, with the caller's kubeconfig).

Every write takes `dry_run`: the API server then runs authorization, admission
and validation (and, for an eviction, the PDB check) without persisting
anything. Every result carries its `ApiCall` (status, Audit-ID) for the audit
log. Refusals raise (Forbidden, NotFound, Conflict, ApiRejected, see
gpuctl.errors); an eviction instead returns one of its distinct outcomes, and
never falls back to deleting the pod.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpuctl.identity import Identity
from gpuctl.playbooks.kubeapi import (
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    OWN_IDENTITY,
    ApiCall,
    ApiResponse,
    KubeApi,
    ObjectRef,
    check,
    collection_path,
    refusal,
)

# Who writes the Events a playbook leaves on objects (events.k8s.io/v1 reportingController).
REPORTING_CONTROLLER = "gpuctl.io/playbooks"

EvictionOutcome = Literal["evicted", "gone", "precondition_failed", "pdb_refused", "multiple_pdbs"]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    call: ApiCall


class ObjectResult(_Result):
    """An object as the API server returned it (raw JSON), with the call that got it."""

    object: JSON

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))

    @property
    def uid(self) -> str:
        return str(self.object.get("metadata", {}).get("uid", ""))


class ListResult(_Result):
    """The items of a collection as the API server returned them (raw JSON), at the list's resourceVersion."""

    items: tuple[JSON, ...]
    resource_version: str


class EvictionResult(_Result):
    """What the Eviction API decided. Only `evicted` removed anything (and not under dry run)."""

    outcome: EvictionOutcome
    message: str = Field(description="the API server's message, e.g. which disruption budget refused")
    retry_after_s: int | None = Field(None, description="Retry-After on a 429, when the server sent one")
    disruption_budget: str | None = Field(None, description="the DisruptionBudget cause of a 429: the budget's state")


class ScaleResult(_Result):
    """An autoscaling/v1 Scale: desired replicas (spec) and current (status)."""

    replicas: int
    current_replicas: int | None
    selector: str | None
    resource_version: str


class AccessReview(_Result):
    """The cluster's answer to "may this identity do that?" (a SelfSubjectAccessReview made as the identity)."""

    identity: Identity | None
    verb: str
    resource: str = Field(description="e.g. 'pods/eviction', 'playbookruns.gpuctl.io'")
    namespace: str | None
    name: str | None
    allowed: bool
    denied: bool = Field(description="an authorizer explicitly denied (RBAC never does; webhooks may)")
    reason: str = Field(description="the authorizer's reason, e.g. 'RBAC: allowed by RoleBinding ...'; often empty on denial")
    evaluation_error: str

    def explain(self) -> str:
        who = str(self.identity) if self.identity else OWN_IDENTITY
        what = f"{self.verb} {self.resource}" + (f" {self.name}" if self.name else "")
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)"
        verdict = "may" if self.allowed else "may not"
        because = "; ".join(part for part in (self.reason, self.evaluation_error) if part)
        return f"{who} {verdict} {what}{where}" + (f": {because}" if because else "")


# The groups every authenticated request carries anyway: never worth impersonating explicitly.
IMPLICIT_GROUPS = frozenset({"system:authenticated"})


class ActingClient:
    """Reads and writes as one identity. Cheap: make one per identity over a shared KubeApi.

    `before_write`, when given, is awaited before every request that is not a GET (the engine
    checks its kill switch and its locks there), and may raise to stop the request."""

    def __init__(
        self, api: KubeApi, identity: Identity | None, *, before_write: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.api = api
        self.identity = identity
        self._before_write = before_write

    async def _request(self, method: Literal["GET", "POST", "PATCH"], path: str, **kwargs: Any) -> ApiResponse:
        if method != "GET" and self._before_write is not None:
            await self._before_write()
        return await self.api.request(method, path, acting_as=self.identity, **kwargs)

    async def whoami(self) -> Identity:
        """Who the API server takes this client for (a SelfSubjectReview): the kubeconfig's user, or the
        impersonated identity. `system:authenticated` is left out: every request carries it anyway."""
        body: JSON = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        response = await self.api.request(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", acting_as=self.identity, body=body
        )
        info = check(response, what="create a SelfSubjectReview").get("status", {}).get("userInfo", {})
        groups = tuple(g for g in info.get("groups") or () if g not in IMPLICIT_GROUPS)
        return Identity(user=info.get("username") or "system:anonymous", groups=groups)

    async def get(self, ref: ObjectRef, *, subresource: str | None = None) -> ObjectResult:
        response = await self._request("GET", ref.path(subresource))
        return ObjectResult(call=response.call, object=check(response, what=f"get {ref}"))

    async def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        """Every object of a collection (in one namespace, or all of them with None), optionally filtered by selectors."""
        selectors = {"labelSelector": label_selector, "fieldSelector": field_selector}
        params = {key: value for key, value in selectors.items() if value}
        path = collection_path(group, version, plural, namespace)
        response = await self._request("GET", path, params=params)
        body = check(response, what=f"list {plural}" + (f" in namespace {namespace}" if namespace else ""))
        return ListResult(
            call=response.call,
            items=tuple(body.get("items") or ()),
            resource_version=str((body.get("metadata") or {}).get("resourceVersion", "")),
        )

    async def patch(
        self,
        ref: ObjectRef,
        patch: JSON | list[JSON],
        *,
        resource_version: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> ObjectResult:
        """A merge patch (a dict) or a JSON patch (a list of operations).

        With `resource_version` the server applies it only to that version of the object,
        else raises Conflict (the object changed since it was read)."""
        if isinstance(patch, dict):
            content_type = MERGE_PATCH
            if resource_version is not None:
                metadata = {**patch.get("metadata", {}), "resourceVersion": resource_version}
                patch = {**patch, "metadata": metadata}
        else:
            content_type = JSON_PATCH
            if resource_version is not None:
                # Not a "test" op: a failed test is a 422; a stale resourceVersion in the result is a 409 Conflict.
                patch = [{"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}, *patch]
        response = await self._request(
            "PATCH", ref.path(subresource), body=patch, content_type=content_type, dry_run=dry_run
        )
        target = f"{ref} ({subresource})" if subresource else str(ref)
        return ObjectResult(call=response.call, object=check(response, what=f"patch {target}"))

    async def annotate(
        self,
        ref: ObjectRef,
        annotations: Mapping[str, str | None],
        *,
        resource_version: str | None = None,
        dry_run: bool = False,
    ) -> ObjectResult:
        """Set (or, with None, remove) annotations: e.g. a staged-reclaim notice on a pod."""
        return await self.patch(
            ref, {"metadata": {"annotations": dict(annotations)}}, resource_version=resource_version, dry_run=dry_run
        )

    async def evict(
        self,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
    ) -> EvictionResult:
        """Evict a pod through the Eviction API (policy/v1), pinned to the pod that was planned.

        `uid`/`resource_version` become deleteOptions.preconditions: a pod replaced or changed since
        the plan is not evicted (`precondition_failed`). A PodDisruptionBudget that refuses gives
        `pdb_refused` (429: retry later, never bypass); a pod under several budgets `multiple_pdbs`
        (500: nothing the caller can retry). Forbidden and unexpected answers raise."""
        preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
        body: JSON = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": {"preconditions": preconditions} if preconditions else {},
        }
        pod = ObjectRef(plural="pods", namespace=namespace, name=name)
        response = await self._request("POST", pod.path("eviction"), body=body, dry_run=dry_run)
        return eviction_result(response, pod)

    async def get_scale(self, ref: ObjectRef) -> ScaleResult:
        return _scale(await self.get(ref, subresource="scale"))

    async def scale(
        self, ref: ObjectRef, replicas: int, *, resource_version: str | None = None, dry_run: bool = False
    ) -> ScaleResult:
        """Set desired replicas through the `scale` subresource (Deployments, MachineDeployments, ...)."""
        patched = await self.patch(
            ref, {"spec": {"replicas": replicas}}, resource_version=resource_version, subresource="scale", dry_run=dry_run
        )
        return _scale(patched)

    async def create_event(
        self,
        regarding: Mapping[str, Any],
        *,
        reason: str,
        note: str,
        action: str,
        type: Literal["Normal", "Warning"] = "Normal",
        dry_run: bool = False,
    ) -> ObjectResult:
        """An events.k8s.io/v1 Event on an object (as read: apiVersion, kind, metadata), shown by `kubectl describe`."""
        meta = regarding["metadata"]
        namespace = meta.get("namespace") or "default"  # where events about cluster-scoped objects (nodes) go
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body: JSON = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.gpuctl-", "namespace": namespace},
            "eventTime": now,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": f"{REPORTING_CONTROLLER}/{self.identity.user if self.identity else 'local'}"[:128],
            "action": action,
            "reason": reason,
            "note": note[:1024],  # the API's limit for note
            "type": type,
            "regarding": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        path = collection_path("events.k8s.io", "v1", "events", namespace)
        response = await self._request("POST", path, body=body, dry_run=dry_run)
        what = f"create an Event on {regarding['kind']} {namespace}/{meta['name']}"
        return ObjectResult(call=response.call, object=check(response, what=what))

    async def can_i(
        self,
        verb: str,
        resource: str,
        *,
        namespace: str | None = None,
        subresource: str = "",
        group: str = "",
        name: str = "",
    ) -> AccessReview:
        """Ask the cluster whether this identity may `verb` the resource (a SelfSubjectAccessReview, impersonated).

        Self-review rather than SubjectAccessReview: every authenticated user may create one
        (system:basic-user), so the impersonate-only service identity needs no extra right, and the
        answer is exactly what the API server will decide for the impersonated request."""
        attributes = {
            "verb": verb,
            "group": group,
            "resource": resource,
            "subresource": subresource,
            "name": name,
            **({"namespace": namespace} if namespace else {}),
        }
        body: JSON = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        response = await self._request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)
        status = check(response, what="create a SelfSubjectAccessReview").get("status", {})
        shown = (f"{resource}.{group}" if group else resource) + (f"/{subresource}" if subresource else "")
        return AccessReview(
            call=response.call,
            identity=self.identity,
            verb=verb,
            resource=shown,
            namespace=namespace,
            name=name or None,
            allowed=bool(status.get("allowed")),
            denied=bool(status.get("denied")),
            reason=status.get("reason", ""),
            evaluation_error=status.get("evaluationError", ""),
        )


def eviction_result(response: ApiResponse, pod: ObjectRef) -> EvictionResult:
    """Map the Eviction API's answer to its outcome (codes from kube-apiserver's eviction.go)."""
    call, body = response.call, response.body
    message = call.message or str(body.get("message", ""))
    outcome: EvictionOutcome
    if response.ok:
        outcome = "evicted"
    elif call.status == 404:
        outcome = "gone"
    elif call.status == 409:
        outcome = "precondition_failed"
    elif call.status == 429:
        outcome = "pdb_refused"
    elif call.status == 500 and "more than one PodDisruptionBudget" in message:
        outcome = "multiple_pdbs"
    else:
        raise refusal(response, what=f"evict {pod}")
    causes = (body.get("details") or {}).get("causes") or ()
    budget = next((c.get("message") for c in causes if c.get("reason") == "DisruptionBudget"), None)
    return EvictionResult(
        call=call,
        outcome=outcome,
        message=message or ("evicted" if outcome == "evicted" else f"HTTP {call.status}"),
        retry_after_s=response.retry_after_s,
        disruption_budget=budget,
    )


def _scale(result: ObjectResult) -> ScaleResult:
    spec, status = result.object.get("spec") or {}, result.object.get("status") or {}
    return ScaleResult(
        call=result.call,
        replicas=int(spec.get("replicas", 0)),
        current_replicas=status.get("replicas"),
        selector=status.get("selector"),
        resource_version=result.resource_version,
    )
