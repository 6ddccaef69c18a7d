"""A pod's chain of controllers, read from ownerReferences, never guessed from names.

A pod names its own controller (a ReplicaSet, a Job, a StatefulSet, ...). When that
is a ReplicaSet or a Job gpuctl watches, its record names the next controller up
(Deployment, CronJob, or whatever else made it), and so on. The chain stops at a
controller gpuctl has no record of: the top, or one it cannot see (not listed
yet, or not readable). An ownerReference and a record of the same name but a
different uid are different objects (one was deleted and remade): the chain
stops there too, rather than lead somewhere wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpuctl.model import Owner, namespaced_key
from gpuctl.state.frozen import maker
from gpuctl.state.records import ControllerRecord, Kind, PodRecord

# Controllers gpuctl keeps records of (the kinds that have controllers of their own), by ownerReference kind.
FOLLOWED: dict[str, Kind] = {"ReplicaSet": Kind.REPLICASET, "Job": Kind.JOB}
MAX_DEPTH = 4  # pod -> ReplicaSet -> Deployment is 2; anything longer is a loop or an oddity

Link = tuple[str, str, str | None]  # (kind, name, uid)
Lookup = tuple[Kind, str]  # (record kind, record key) a chain looked at, found or not
Chain = tuple[str, tuple[Link, ...]]  # (namespace, links)

make_owner = maker(Owner)


def owner_links(
    pod: PodRecord, controllers: Mapping[Kind, Mapping[str, ControllerRecord]]
) -> tuple[tuple[Link, ...], tuple[Lookup, ...]]:
    """The pod's chain of controllers, its own first, and the records it looked up on the way."""
    if pod.owner_kind is None or pod.owner_name is None:
        return (), ()
    links: list[Link] = [(pod.owner_kind, pod.owner_name, pod.owner_uid)]
    lookups: list[Lookup] = []
    while len(links) < MAX_DEPTH:
        kind, name, uid = links[-1]
        followed = FOLLOWED.get(kind)
        if followed is None:
            break
        key = namespaced_key(pod.namespace, name)  # interned: the pods of one controller keep one copy
        lookups.append((followed, key))
        record = controllers.get(followed, {}).get(key)
        if record is None or (uid is not None and record.uid is not None and uid != record.uid):
            break
        links.append((record.owner_kind, record.owner_name, record.owner_uid))
    # Once each: a controller that owns itself (or a loop) is looked up again and again until MAX_DEPTH.
    return tuple(links), tuple(dict.fromkeys(lookups))


def owner_models(links: tuple[Link, ...]) -> tuple[Owner, ...]:
    return tuple(make_owner({"kind": kind, "name": name, "uid": uid}) for kind, name, uid in links)


class OwnerChains:
    """Owner tuples shared by every pod with the same chain: thousands of pods, a few hundred chains.

    The pods of a chain share its key too (the first pod's), not one equal tuple each."""

    def __init__(self) -> None:
        self._chains: dict[Chain, tuple[tuple[Owner, ...], int, Chain]] = {}  # -> (owners, pods, the shared key)
        self._of_pod: dict[str, Chain] = {}

    def get(self, pod_key: str, namespace: str, links: tuple[Link, ...]) -> tuple[Owner, ...]:
        """The shared Owner tuple for `links`, now held by `pod_key` (instead of what it held before)."""
        if not links:
            self.drop(pod_key)
            return ()
        chain = (namespace, links)
        before = self._of_pod.get(pod_key)
        if before == chain:
            return self._chains[chain][0]
        self.drop(pod_key)
        entry = self._chains.get(chain)
        if entry is None:
            owners, pods = owner_models(links), 0
        else:
            owners, pods, chain = entry
        self._chains[chain] = (owners, pods + 1, chain)
        self._of_pod[pod_key] = chain
        return owners

    def drop(self, pod_key: str) -> None:
        chain = self._of_pod.pop(pod_key, None)
        if chain is None:
            return
        owners, pods, shared = self._chains[chain]
        if pods == 1:
            del self._chains[chain]
        else:
            self._chains[chain] = (owners, pods - 1, shared)

    def __len__(self) -> int:
        return len(self._chains)
