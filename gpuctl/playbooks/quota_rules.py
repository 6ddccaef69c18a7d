"""adjust-quota's decisions, without I/O: which quota binds, whether a new value
may be set, whether quotas together exceed the cluster, where a ClusterQueue
keeps the number.

ResourceQuota semantics are gpuctl's everywhere (gpuctl.sources.kube.trim,
gpuctl.state.rows.NamespaceQuota): only unscoped quotas limit a whole
namespace, every one applies to every pod, so the lowest hard limit for a key
binds; that is the one adjust-quota changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpuctl.model import Snapshot
from gpuctl.playbooks.quantities import quantity
from gpuctl.sources.kube.trim import trim_quota
from gpuctl.state.resources import GPU
from gpuctl.state.rows import QUOTA_PREFIX

JSON = Mapping[str, Any]

_HARD_FIELD = re.compile(r"spec\.hard\[(?P<key>[^\]]+)\]")
_USED_FIELD = re.compile(r"status\.used\[(?P<key>[^\]]+)\]")
_NOMINAL_FIELD = re.compile(
    r"spec\.resourceGroups\.flavors\[(?P<flavor>[^\]]+)\]\.resources\[(?P<resource>[^\]]+)\]\.nominalQuota"
)


def quota_key(resource: str) -> str:
    """The ResourceQuota key Kubernetes enforces for an extended resource: requests.<resource>."""
    return QUOTA_PREFIX + resource


def hard_field(key: str) -> str:
    return f"spec.hard[{key}]"


def used_field(key: str) -> str:
    return f"status.used[{key}]"


def nominal_field(flavor: str, resource: str) -> str:
    return f"spec.resourceGroups.flavors[{flavor}].resources[{resource}].nominalQuota"


def parse_hard_field(field: str) -> str | None:
    match = _HARD_FIELD.fullmatch(field)
    return match["key"] if match else None


def parse_used_field(field: str) -> str | None:
    match = _USED_FIELD.fullmatch(field)
    return match["key"] if match else None


def parse_nominal_field(field: str) -> tuple[str, str] | None:
    match = _NOMINAL_FIELD.fullmatch(field)
    return (match["flavor"], match["resource"]) if match else None


# -- ResourceQuota --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaLimit:
    """One unscoped ResourceQuota's limit for a key: `hard` as spec.hard says, `enforced` as its status does."""

    name: str
    uid: str
    resource_version: str
    hard: float
    enforced: float
    used: float


@dataclass(frozen=True, slots=True)
class Binding:
    limit: QuotaLimit | None  # the binding one: lowest enforced hard (None: no unscoped quota has the key)
    others: tuple[QuotaLimit, ...]  # further unscoped quotas with the key (higher or equal limits)
    scoped: tuple[str, ...]  # scoped quotas naming the key: they limit only some pods, adjust-quota leaves them


def binding_quota(quotas: Iterable[JSON], key: str) -> Binding:
    """The namespace's binding quota for `key` among its ResourceQuota objects (as read from the API)."""
    limits: list[QuotaLimit] = []
    scoped: list[str] = []
    for obj in quotas:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        hard = quantity((spec.get("hard") or {}).get(key))
        if hard is None:
            continue
        if spec.get("scopes") or spec.get("scopeSelector"):
            scoped.append(str(meta.get("name")))
            continue
        record = trim_quota(obj)  # status.hard (enforced) and status.used, as the snapshot reads them
        limits.append(
            QuotaLimit(
                name=str(meta["name"]),
                uid=str(meta.get("uid", "")),
                resource_version=str(meta.get("resourceVersion", "")),
                hard=hard,
                enforced=record.hard.get(key, hard) if record else hard,
                used=record.used.get(key, 0.0) if record else 0.0,
            )
        )
    if not limits:
        return Binding(None, (), tuple(scoped))
    # The first of two equal limits wins, as in the snapshot (store order = the API's order, by name).
    ordered = sorted(limits, key=lambda limit: limit.enforced)
    return Binding(ordered[0], tuple(ordered[1:]), tuple(scoped))


def no_quota_reason(namespace: str, key: str, scoped: Sequence[str]) -> str:
    """Why adjust-quota refuses a namespace without an unscoped quota for the key, and what to do instead."""
    text = (
        f"namespace {namespace} has no ResourceQuota limiting {key}, so there is nothing to adjust;"
        f" create one first (kubectl create quota gpu -n {namespace} --hard={key}=N), then adjust it"
    )
    if scoped:
        text += f" (scoped quotas {', '.join(scoped)} limit only some of its pods and are not changed)"
    return text


# -- the value --------------------------------------------------------------------------------


def check_new_value(
    what: str, before: float, new: int, used: float, *, force: bool, max_gpus: int | None
) -> tuple[list[str], list[str]]:
    """(blocked, warnings) for setting `what` from `before` to `new` while `used` is in use."""
    blocked: list[str] = []
    warnings: list[str] = []
    shown_used = f"{used:g}"
    if new == before:
        blocked.append(f"{what} is already {new}: nothing to change")
    if new < used:
        if force:
            warnings.append(
                f"{new} is below the {shown_used} in use: running pods keep running (a quota evicts nothing),"
                " new ones are refused until usage drops under it"
            )
        else:
            blocked.append(
                f"{new} is below the {shown_used} in use: running pods would keep running but every new one"
                " would be refused; pass force=true to set it anyway"
            )
    change = abs(new - before)
    if max_gpus is not None and change > max_gpus:
        blocked.append(f"a change of {change:g} GPUs exceeds this playbook's max_gpus ({max_gpus}) per run")
    return blocked, warnings


def shadowed_warning(key: str, new: int, others: Iterable[QuotaLimit]) -> str | None:
    """A further quota would still hold the namespace below the new value."""
    lower = [o for o in others if o.enforced < new]
    if not lower:
        return None
    lowest = min(lower, key=lambda o: o.enforced)
    return (
        f"ResourceQuota {lowest.name} also limits {key} to {lowest.enforced:g}: the namespace stays at"
        f" {lowest.enforced:g} until that one is raised too"
    )


# -- capacity -----------------------------------------------------------------------------------


def capacity(snapshot: Snapshot, resource: str) -> int:
    """Allocatable devices of `resource` in the cluster: whole GPUs (time-sliced ones once) or one MIG profile."""
    if resource == GPU:
        return sum(node.gpu_allocatable for node in snapshot.nodes)
    return sum(node.mig_allocatable.get(resource, 0) for node in snapshot.nodes)


def namespace_quota_total(snapshot: Snapshot, resource: str, namespace: str, new: int) -> tuple[float, int]:
    """(sum of every namespace's binding quota for `resource` with `namespace` at `new`, namespaces counted)."""
    total, counted = float(new), 1
    for usage in snapshot.namespaces:
        if usage.name == namespace:
            continue
        hard = usage.gpu_quota_hard if resource == GPU else usage.mig_quota_hard.get(resource)
        if hard is not None:
            total += hard
            counted += 1
    return total, counted


def overcommit_warning(total: float, across: str, what: str, resource: str, cluster: int) -> str | None:
    """Quotas may add up to more than the cluster has; say so (a quota is a ceiling, not a reservation)."""
    if total <= cluster:
        return None
    return (
        f"{what} for {resource} would add up to {total:g} across {across}, above the {cluster} the cluster"
        " can allocate: a quota is a ceiling, not a reservation, so pods within their quota may wait for GPUs"
    )


# -- Kueue ClusterQueue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NominalSpot:
    """Where a flavor's nominalQuota for a resource sits in a ClusterQueue's spec, and its value."""

    group: int
    flavor_index: int
    resource_index: int
    flavor: str
    value: float

    @property
    def path(self) -> str:
        return f"/spec/resourceGroups/{self.group}/flavors/{self.flavor_index}/resources/{self.resource_index}/nominalQuota"


def locate_nominal(queue: JSON, resource: str, flavor: str | None) -> NominalSpot | str:
    """The spot for `resource` in `flavor` (or in the only flavor covering it), or why there is none."""
    name = (queue.get("metadata") or {}).get("name")
    spots: list[NominalSpot] = []
    for g, group in enumerate((queue.get("spec") or {}).get("resourceGroups") or ()):
        if resource not in (group.get("coveredResources") or ()):
            continue
        for f, entry in enumerate(group.get("flavors") or ()):
            for r, item in enumerate(entry.get("resources") or ()):
                value = quantity(item.get("nominalQuota"))
                if item.get("name") == resource and value is not None:
                    spots.append(NominalSpot(g, f, r, str(entry.get("name")), value))
    names = ", ".join(s.flavor for s in spots)
    if not spots:
        return f"ClusterQueue {name} covers no {resource} (its resourceGroups' coveredResources do not list it)"
    if flavor is not None:
        chosen = [s for s in spots if s.flavor == flavor]
        if not chosen:
            return f"ClusterQueue {name} has no flavor {flavor} for {resource} (flavors: {names})"
        return chosen[0]
    if len(spots) > 1:
        return f"ClusterQueue {name} has several flavors for {resource} ({names}): name one with flavor="
    return spots[0]


def queue_usage(queue: JSON, flavor: str, resource: str) -> float:
    """What the queue's admitted workloads hold of `resource` in `flavor` (reserved or used, whichever is more)."""
    status = queue.get("status") or {}
    held = 0.0
    for section in ("flavorsReservation", "flavorsUsage"):
        for entry in status.get(section) or ():
            if entry.get("name") != flavor:
                continue
            for item in entry.get("resources") or ():
                if item.get("name") == resource:
                    held = max(held, quantity(item.get("total")) or 0.0)
    return held


def queues_total(queues: Iterable[JSON], name: str, flavor: str, resource: str, new: int) -> tuple[float, int]:
    """(sum of nominalQuota for `resource` over every ClusterQueue and flavor, with `name`/`flavor` at `new`, queues counted)."""
    total, counted = 0.0, 0
    for queue in queues:
        queue_name = (queue.get("metadata") or {}).get("name")
        found = False
        for group in (queue.get("spec") or {}).get("resourceGroups") or ():
            for entry in group.get("flavors") or ():
                for item in entry.get("resources") or ():
                    if item.get("name") != resource:
                        continue
                    found = True
                    ours = queue_name == name and entry.get("name") == flavor
                    total += new if ours else (quantity(item.get("nominalQuota")) or 0.0)
        counted += found
    return total, counted
