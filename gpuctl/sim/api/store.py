"""Objects the simulated API keeps as they were written: PlaybookRuns, Leases, ConfigMaps, Events.

What gpuctl relies on of the API server, it gets here too: a create of an
existing name is 409 AlreadyExists (`generateName` picks a free one); an
update or patch carrying a resourceVersion other than the stored one is 409
Conflict; a delete's preconditions (uid, resourceVersion) are checked; the
status subresource changes only status, the main resource never does; and a
PlaybookRun's spec cannot change after creation (the CRD's CEL rule).
A stored object is never changed in place: every write stores a new version
(sharing the parts it did not change), so what a reader or the revision log
holds stays as it was; each version goes into the log, so a watch delivers
every one, as the API server's does. Bodies cross the transport as JSON
bytes, as over a wire.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from gpuctl.sim.api.status import JSON, already_exists, bad_request, conflict, invalid, not_found
from gpuctl.sim.revisions import Revisions

RUNS = "playbookruns.gpuctl.io"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Fields of a kind that only its status subresource writes (and that creating it ignores), and immutable spec.
_STATUS_KINDS = frozenset({RUNS})
_IMMUTABLE_SPEC = frozenset({RUNS})


class ObjectStore:
    def __init__(self, revisions: Revisions, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC), seed: int = 7) -> None:
        self.revisions = revisions
        self._objects: dict[str, dict[str, JSON]] = {}  # resource -> key -> object
        self._clock = clock
        self._rng = random.Random(f"store-{seed}")

    def get(self, resource: str, namespace: str | None, name: str) -> JSON:
        found = self._objects.get(resource, {}).get(_key(namespace, name))
        if found is None:
            raise not_found(resource, name)
        return found

    def items(self, resource: str, namespace: str | None) -> Iterator[JSON]:
        for obj in self._objects.get(resource, {}).values():
            if namespace in (None, obj["metadata"].get("namespace")):
                yield obj

    def create(self, resource: str, namespace: str | None, obj: JSON, *, dry_run: bool) -> JSON:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if namespace is not None:
            meta["namespace"] = namespace
        objects = self._objects.setdefault(resource, {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(resource, "", "metadata.name: Required value: name or generateName is required")
            while _key(namespace, name := prefix + "".join(self._rng.choice(_ALPHABET) for _ in range(5))) in objects:
                pass
            meta["name"] = name
        key = _key(namespace, meta["name"])
        if key in objects:
            raise already_exists(resource, meta["name"])
        if resource in _STATUS_KINDS:
            obj.pop("status", None)
        meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"), "generation": 1}
        if dry_run:
            meta["resourceVersion"] = self.revisions.version(resource, key)
            return obj
        objects[key] = obj  # the request's own, freshly parsed body
        self.revisions.bump(resource, key, "ADDED", obj)
        return obj

    def replace(
        self, resource: str, namespace: str | None, name: str, obj: JSON, *, subresource: str | None, dry_run: bool
    ) -> JSON:
        """PUT: the whole object (or, for `status`, its status) at the resourceVersion it carries, if any."""
        current = self.get(resource, namespace, name)
        meta = obj.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if (version := meta.get("resourceVersion")) and version != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        if subresource == "status":
            updated = {**current, "status": obj.get("status") or {}}
        else:
            updated = {**obj, "metadata": {**current["metadata"], **_user_meta(meta)}}
            if resource in _STATUS_KINDS:
                updated["status"] = current.get("status")
        return self._store(resource, namespace, name, current, updated, dry_run=dry_run)

    def write(self, resource: str, namespace: str | None, name: str, current: JSON, updated: JSON, *, dry_run: bool) -> JSON:
        """A patched object (the caller applied the patch to `current`): stored if its resourceVersion still holds."""
        version = (updated.get("metadata") or {}).get("resourceVersion")
        if version != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        return self._store(resource, namespace, name, current, updated, dry_run=dry_run)

    def _store(self, resource: str, namespace: str | None, name: str, current: JSON, updated: JSON, *, dry_run: bool) -> JSON:
        if resource in _IMMUTABLE_SPEC and updated.get("spec") != current.get("spec"):
            raise invalid(resource, name, "spec: Invalid value: the spec of a PlaybookRun is immutable")
        kept = {field: current["metadata"].get(field) for field in ("uid", "creationTimestamp", "namespace", "name")}
        updated = {**updated, "metadata": {**(updated.get("metadata") or {}), **kept}}  # a new version, never the old one changed
        if updated == current or dry_run:
            return updated
        key = _key(namespace, name)
        self._objects[resource][key] = updated
        self.revisions.bump(resource, key, "MODIFIED", updated)
        return updated

    def delete(self, resource: str, namespace: str | None, name: str, options: JSON, *, dry_run: bool) -> JSON:
        current = self.get(resource, namespace, name)
        preconditions = options.get("preconditions") or {}
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if (wanted := preconditions.get(field)) is not None and wanted != current["metadata"].get(field):
                why = f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {current['metadata'].get(field)}"
                raise conflict(resource, name, why)
        if not dry_run:
            key = _key(namespace, name)
            gone = self._objects[resource].pop(key)
            self.revisions.bump(resource, key, "DELETED", {**gone, "metadata": dict(gone["metadata"])})
        return current


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _user_meta(meta: JSON) -> JSON:
    """The metadata a client may set on update."""
    return {k: v for k, v in meta.items() if k in ("labels", "annotations", "ownerReferences", "finalizers", "resourceVersion")}
