"""The demo's simulated API server: answers KubeApi's requests for the simulated cluster.

It serves what the playbook engine and the four built-in playbooks use, with
the API server's status codes and Status bodies: discovery (a group it does
not serve is a plain-text 404, as kube-apiserver's), get/list/watch with
label and field selectors, create (409 AlreadyExists), update and patch
(merge and JSON patch; 409 Conflict on a stale resourceVersion), delete with
preconditions, `dryRun=All` (checked, nothing changed), the Eviction API
(PodDisruptionBudgets honoured: 429 while a budget allows no disruption, 500
for a pod under several, 409 for a failed precondition; a pending pod is
evicted regardless, as kube-apiserver does), SelfSubjectReview and
SelfSubjectAccessReview. Who may write is `access.DemoAccess`.

Fleet objects (pods, nodes, namespaces, quotas, budgets, NodePools) are the
world's (objects.py); the rest are kept as written (store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpuctl.identity import Identity
from gpuctl.playbooks.policy import Policy
from gpuctl.sim.api.access import DemoAccess
from gpuctl.sim.api.objects import CONFIGMAPS, FLEET_RESOURCES, MIG_CONFIG_MAP, FleetObjects
from gpuctl.sim.api.patching import json_patch, merge_patch
from gpuctl.sim.api.selectors import field_match, label_match
from gpuctl.sim.api.status import (
    JSON,
    ApiError,
    bad_request,
    conflict,
    forbidden,
    not_allowed,
    not_found,
    not_served,
    success,
)
from gpuctl.sim.api.store import ObjectStore
from gpuctl.sim.revisions import Change, TooOld
from gpuctl.sim.world import NODEPOOLS, NODES, OPERATOR_NAMESPACE, PODS, QUOTAS, SimWorld

# group/version -> plural -> Kind (what discovery lists, and all that is served)
SERVED: dict[tuple[str, str], dict[str, str]] = {
    ("", "v1"): {"pods": "Pod", "nodes": "Node", "namespaces": "Namespace", "resourcequotas": "ResourceQuota",
                 "configmaps": "ConfigMap"},
    ("policy", "v1"): {"poddisruptionbudgets": "PodDisruptionBudget"},
    ("events.k8s.io", "v1"): {"events": "Event"},
    ("coordination.k8s.io", "v1"): {"leases": "Lease"},
    ("gpuctl.io", "v1alpha1"): {"playbookruns": "PlaybookRun"},
    ("karpenter.sh", "v1"): {"nodepools": "NodePool"},
    ("authentication.k8s.io", "v1"): {"selfsubjectreviews": "SelfSubjectReview"},
    ("authorization.k8s.io", "v1"): {"selfsubjectaccessreviews": "SelfSubjectAccessReview"},
}  # fmt: skip
_CLUSTER_SCOPED = frozenset({"nodes", "namespaces", "nodepools", "selfsubjectreviews", "selfsubjectaccessreviews"})
_WRITABLE_FLEET = frozenset({PODS, NODES, QUOTAS, NODEPOOLS})
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class Route:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def resource(self) -> str:
        """The resource as the revisions and Status messages name it: plural, dotted with its group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind(self) -> str:
        return SERVED[(self.group, self.version)][self.plural]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: JSON | str  # a str is sent as plain text


def parse_path(path: str) -> Route | tuple[str, str | None]:
    """A resource route, or (group, version) for a discovery request; not_served for anything else."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 2 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
        if len(parts) == 2:
            if not any(g == group for g, _ in SERVED):
                raise not_served(path)
            return group, None
        version = parts[2]
    else:
        raise not_served(path)
    plurals = SERVED.get((group, version))
    if plurals is None:
        raise not_served(path)
    if not rest:
        return group, version
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if rest[0] not in plurals or len(rest) > 3:
        raise not_served(path)
    return Route(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


class SimApiServer:
    def __init__(self, world: SimWorld, *, own: Identity, policy: Policy | None) -> None:
        self.world = world
        self.fleet = FleetObjects(world)
        self.store = ObjectStore(world.revisions, clock=lambda: datetime.now(UTC))
        self.access = DemoAccess(own, policy)

    # -- one request --------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: Mapping[str, str], who: Identity, body: Any, content_type: str) -> Answer:
        try:
            return self._handle(method, path, query, who, body, content_type)
        except ApiError as e:
            return Answer(e.code, e.message + "\n" if e.plain else e.status())

    def _handle(self, method: str, path: str, query: Mapping[str, str], who: Identity, body: Any, content_type: str) -> Answer:
        route = parse_path(path)
        if isinstance(route, tuple):
            return Answer(200, self._discovery(*route))
        verb = _VERBS.get(method)
        if verb is None:
            raise not_allowed(method, path)
        if route.plural in _CLUSTER_SCOPED and route.namespace is not None:
            raise not_served(path)
        if route.plural == "selfsubjectreviews" and method == "POST":
            return Answer(201, self._self_review(who))
        if route.plural == "selfsubjectaccessreviews" and method == "POST":
            return Answer(201, self._access_review(who, body))
        if verb == "get" and route.name is None:
            verb = "list"
        shown = f"{route.plural}/{route.subresource}" if route.subresource else route.plural
        if not self.access.may(who, verb):
            raise forbidden(who.user, verb, f"{shown}.{route.group}" if route.group else shown, route.name, route.namespace)
        dry_run = query.get("dryRun") == "All"
        if verb == "list":
            return Answer(200, self._list(route, query))
        if verb == "get":
            return Answer(200, self._get(route))
        if route.plural == "pods" and route.subresource == "eviction" and method == "POST":
            return self._evict(route, body, dry_run=dry_run)
        if self._fleet_backed(route):
            if method != "PATCH" or route.resource not in _WRITABLE_FLEET or route.subresource:
                raise not_allowed(method, f"{route.resource} in the demo's simulated cluster")
            return Answer(200, self._patch_fleet(route, body, content_type, dry_run=dry_run))
        return self._write_stored(route, method, body, content_type, dry_run=dry_run)

    def _fleet_backed(self, route: Route) -> bool:
        return route.resource in FLEET_RESOURCES or (
            route.plural == CONFIGMAPS and route.namespace == OPERATOR_NAMESPACE and route.name == MIG_CONFIG_MAP
        )

    # -- reads --------------------------------------------------------------------------------
    def _get(self, route: Route) -> JSON:
        assert route.name is not None
        if route.plural == CONFIGMAPS and self._fleet_backed(route):
            return self.fleet.mig_config_map()
        if route.resource in FLEET_RESOURCES:
            return self.fleet.get(route.resource, route.namespace, route.name)
        return self.store.get(route.resource, route.namespace, route.name)

    def _items(self, route: Route) -> list[JSON]:
        if route.resource in FLEET_RESOURCES:
            return list(self.fleet.items(route.resource, route.namespace))
        items = list(self.store.items(route.resource, route.namespace))
        if route.plural == CONFIGMAPS and route.namespace in (None, OPERATOR_NAMESPACE):
            items.append(self.fleet.mig_config_map())
        return items

    def _list(self, route: Route, query: Mapping[str, str]) -> JSON:
        labels, fields = label_match(query.get("labelSelector")), field_match(query.get("fieldSelector"))
        items = [obj for obj in self._items(route) if labels(obj) and fields(obj)]
        version = str(self.world.revisions.current)
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        return {"apiVersion": api_version, "kind": f"{route.kind}List", "metadata": {"resourceVersion": version}, "items": items}

    def _discovery(self, group: str, version: str | None) -> JSON:
        if version is None:
            versions = [{"groupVersion": f"{group}/{v}", "version": v} for g, v in SERVED if g == group]
            return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions[0]}
        resources = [{"name": plural, "kind": kind, "namespaced": plural not in _CLUSTER_SCOPED,
                      "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
                     for plural, kind in SERVED[(group, version)].items()]  # fmt: skip
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    # -- writes -------------------------------------------------------------------------------
    def _patch_fleet(self, route: Route, body: Any, content_type: str, *, dry_run: bool) -> JSON:
        assert route.name is not None
        current = self._get(route)
        patched = _patched(current, body, content_type)
        if (patched.get("metadata") or {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise conflict(route.resource, route.name)
        self.fleet.write_back(route.resource, current, patched, dry_run=dry_run)
        return patched if dry_run else self._get(route)

    def _write_stored(self, route: Route, method: str, body: Any, content_type: str, *, dry_run: bool) -> Answer:
        resource, namespace, name = route.resource, route.namespace, route.name
        if method == "POST" and name is None:
            if not isinstance(body, dict):
                raise bad_request("the body must be a JSON object")
            return Answer(201, self.store.create(resource, namespace, body, dry_run=dry_run))
        if name is None:
            raise not_allowed(method, route.resource)
        if method == "PUT":
            if not isinstance(body, dict):
                raise bad_request("the body must be a JSON object")
            return Answer(
                200, self.store.replace(resource, namespace, name, body, subresource=route.subresource, dry_run=dry_run)
            )
        if method == "PATCH":
            current = self.store.get(resource, namespace, name)
            patched = _patched(current, body, content_type)
            return Answer(200, self.store.write(resource, namespace, name, current, patched, dry_run=dry_run))
        if method == "DELETE":
            self.store.delete(resource, namespace, name, body if isinstance(body, dict) else {}, dry_run=dry_run)
            return Answer(200, success())
        raise not_allowed(method, route.resource)

    def _evict(self, route: Route, body: Any, *, dry_run: bool) -> Answer:
        """The Eviction API (kube-apiserver's eviction.go), on the world's pods and budgets."""
        assert route.namespace is not None and route.name is not None
        key = f"{route.namespace}/{route.name}"
        pod = self.world.pod(key)
        if pod is None:
            raise not_found("pods", route.name)
        current = self.fleet.pod(pod)["metadata"]
        preconditions = ((body or {}).get("deleteOptions") or {}).get("preconditions") or {}
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if (wanted := preconditions.get(field)) is not None and wanted != current[field]:
                why = f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {current[field]}"
                raise conflict("pods", route.name, why)
        if pod.phase == "Running":  # a pod that is not running yet can go whatever its budget says
            budgets = self.world.budgets_of(pod)
            if len(budgets) > 1:
                raise ApiError(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                )
            if budgets and budgets[0].allowed <= 0:
                counted = budgets[0]
                cause = {"reason": "DisruptionBudget",
                         "message": f"The disruption budget {counted.pdb.name} needs {counted.desired} healthy pods and has {counted.healthy} currently"}  # fmt: skip
                raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                               details={"causes": [cause]})  # fmt: skip
        if not dry_run:
            self.world.evict(key)
        return Answer(201, success())

    # -- reviews ------------------------------------------------------------------------------
    def _self_review(self, who: Identity) -> JSON:
        info = {"username": who.user, "groups": [*who.groups, "system:authenticated"]}
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "status": {"userInfo": info}}

    def _access_review(self, who: Identity, body: Any) -> JSON:
        attributes = ((body or {}).get("spec") or {}).get("resourceAttributes") or {}
        verb = str(attributes.get("verb", ""))
        allowed = self.access.may(who, verb)
        status = {"allowed": allowed, "reason": self.access.reason(who, verb)}
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": body.get("spec"),
            "status": status,
        }

    # -- watch --------------------------------------------------------------------------------
    def open_watch(self, path: str, query: Mapping[str, str], who: Identity) -> tuple[Answer, AsyncIterator[JSON] | None]:
        """(the answer's status, its events): a refusal answers at once, with no events."""
        try:
            route = parse_path(path)
            if isinstance(route, tuple) or route.name is not None:
                raise not_allowed("GET", f"watch {path}")
            if not self.access.may(who, "watch"):
                raise forbidden(who.user, "watch", route.resource, None, route.namespace)
            labels, fields = label_match(query.get("labelSelector")), field_match(query.get("fieldSelector"))
        except ApiError as e:
            return Answer(e.code, e.message + "\n" if e.plain else e.status()), None
        timeout_s = float(query.get("timeoutSeconds") or 300)
        since = query.get("resourceVersion") or ""
        return Answer(200, {}), self._events(route, since, timeout_s, lambda obj: labels(obj) and fields(obj))

    async def _events(self, route: Route, since: str, timeout_s: float, wanted: Any) -> AsyncIterator[JSON]:
        revisions = self.world.revisions
        if since in ("", "0"):
            revision = revisions.current
            for obj in self._items(route):
                if wanted(obj):
                    yield {"type": "ADDED", "object": obj}
        else:
            revision = int(since) if since.isdigit() else -1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    seen = revisions.current
                    try:
                        changes = revisions.since(revision, route.resource)
                    except TooOld as e:
                        yield {"type": "ERROR", "object": ApiError(410, "Expired", str(e)).status()}
                        return
                    for change in changes:
                        event = self._event(route, change)
                        if event is not None and wanted(event["object"]):
                            yield event
                    revision = seen  # changes made while the consumer held an event come next round
                    if revisions.current == seen:
                        await revisions.wait()

    def _event(self, route: Route, change: Change) -> JSON | None:
        namespace, _, name = change.key.rpartition("/")
        if route.namespace is not None and namespace != route.namespace:
            return None
        if change.object is not None:  # a kept object: this version of it
            return {"type": change.type, "object": change.object}
        if change.type == "DELETED":
            return {
                "type": "DELETED",
                "object": {"metadata": {"name": name, "namespace": namespace or None, "resourceVersion": str(change.revision)}},
            }
        try:  # a fleet object: rendered now, so a version changed again since is left to that later change
            obj = self._get(Route(route.group, route.version, route.plural, namespace or None, name, None))
        except ApiError:
            return None
        return {"type": change.type, "object": obj} if obj["metadata"]["resourceVersion"] == str(change.revision) else None


def _patched(current: JSON, body: Any, content_type: str) -> JSON:
    if "json-patch" in content_type:
        if not isinstance(body, list):
            raise bad_request("a JSON patch must be a list of operations")
        return json_patch(current, body)
    if not isinstance(body, dict):
        raise bad_request("a merge patch must be a JSON object")
    patched = merge_patch(current, body)
    assert isinstance(patched, dict)
    return patched


def encode(answer: Answer) -> bytes:
    return answer.body.encode() if isinstance(answer.body, str) else json.dumps(answer.body).encode()
