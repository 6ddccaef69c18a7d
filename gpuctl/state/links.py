"""What a pod row needs from other objects: its chain of owners and its disruption budgets, kept incrementally.

The Joiner (join.py) hands `PodLinks` the ReplicaSet, Job and
PodDisruptionBudget keys the store touched and the pods that came and went;
PodLinks answers which pod rows that makes stale, and, per pod, the owner
chain (owners.py) and the budgets with the eviction verdict (disruption.py).
It remembers which records each pod's chain looked up and which budgets apply
to which pods, so an event costs the pods it concerns, not the cluster:

* a ReplicaSet or Job that changed: the pods whose chain looked it up;
* a budget whose numbers changed: the pods it applies to;
* a budget that came, went or changed its selector: every pod of its namespace;
* a kind that became readable or unreadable: every pod.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping

from gpuctl.model import Owner
from gpuctl.state.disruption import BudgetIndex, eviction_allowed
from gpuctl.state.owners import FOLLOWED, Lookup, OwnerChains, owner_links
from gpuctl.state.records import ControllerRecord, Kind, PdbRecord, PodRecord


class PodLinks:
    def __init__(self) -> None:
        self._known: frozenset[Kind] = frozenset()
        # Owner chains: controller records as last taken in, and which pods looked each one up.
        self._controllers: dict[Kind, dict[str, ControllerRecord]] = {kind: {} for kind in FOLLOWED.values()}
        self._lookups_of: dict[str, tuple[Lookup, ...]] = {}  # pod key -> records its chain looked up
        self._looked_up_by: dict[Lookup, set[str]] = {}  # the reverse
        self._chains = OwnerChains()
        # Budgets per namespace (indexed by label), which apply to which pods, and the pods of each namespace.
        self._pdbs = BudgetIndex()
        self._budgets_of: dict[str, tuple[str, ...]] = {}  # pod key -> keys of the budgets that apply
        self._applies_to: dict[str, set[str]] = {}  # budget key -> pod keys
        self._space_pods: dict[str, set[str]] = {}  # namespace -> pod keys

    # -- taking changes in ------------------------------------------------------------------

    def add_pod(self, key: str, namespace: str) -> None:
        self._space_pods.setdefault(namespace, set()).add(key)

    def remove_pod(self, key: str, namespace: str) -> None:
        """The pod is gone: forget what it looked up and which budgets applied to it."""
        pods = self._space_pods[namespace]
        pods.discard(key)
        if not pods:
            del self._space_pods[namespace]
        self._set_lookups(key, ())
        self._chains.drop(key)
        self._set_budgets(key, ())

    def apply_known(self, known: frozenset[Kind], touched_pods: set[str]) -> None:
        if known != self._known:  # a kind became (un)readable: chains and verdicts may read differently
            self._known = known
            touched_pods.update(_all(self._space_pods))

    def apply_controllers(
        self,
        records: Mapping[Kind, Mapping[str, ControllerRecord]],
        dirty: Mapping[Kind, Collection[str]],
        touched_pods: set[str],
    ) -> None:
        """Take ReplicaSet and Job records in: pods whose chain looked up one that moved are stale."""
        for kind, known in self._controllers.items():
            current = records.get(kind, {})
            for key in dirty.get(kind, ()):
                new, old = current.get(key), known.get(key)
                if new is old:
                    continue
                if new is None:
                    del known[key]
                else:
                    known[key] = new
                    if old is not None and new == old:
                        continue
                touched_pods.update(self._looked_up_by.get((kind, key), ()))

    def apply_pdbs(
        self, records: Mapping[str, PdbRecord], keys: Iterable[str], touched_pods: set[str]
    ) -> Iterator[tuple[str, PdbRecord | None]]:
        """Take budget records in; yields (key, record or None) for each budget that changed."""
        for key in keys:
            new = records.get(key)
            namespace = key.partition("/")[0]
            old = self._pdbs.get(namespace, key)
            if new is old:
                continue
            self._pdbs.put(namespace, key, new)
            if old is not None and new is not None and new == old:
                continue
            if old is not None and new is not None and old.selector == new.selector:
                touched_pods.update(self._applies_to.get(key, ()))  # the same pods, other numbers
            else:
                touched_pods.update(self._space_pods.get(namespace, ()))  # which pods it covers may differ
            yield key, new

    # -- answers ----------------------------------------------------------------------------

    def links(
        self, key: str, rec: PodRecord, controllers: Mapping[Kind, Mapping[str, ControllerRecord]]
    ) -> tuple[tuple[Owner, ...], tuple[str, ...], bool | None]:
        """(owner chain, names of the budgets that apply, eviction verdict) for a present pod."""
        links, lookups = owner_links(rec, controllers)
        self._set_lookups(key, lookups)
        owners = self._chains.get(key, rec.namespace, links)
        budgets = self._pdbs.for_pod(rec.namespace, rec.labels)
        self._set_budgets(key, tuple(b.key for b in budgets))
        allowed = eviction_allowed(
            phase=rec.phase, deleting=rec.deleting, ready=rec.ready, budgets=budgets if Kind.PDB in self._known else None
        )
        return owners, tuple(b.name for b in budgets), allowed

    # -- indexes ----------------------------------------------------------------------------

    def _set_lookups(self, pod_key: str, lookups: tuple[Lookup, ...]) -> None:
        before = self._lookups_of.get(pod_key, ())
        if before == lookups:
            return
        _unindex(self._looked_up_by, before, pod_key)
        for lookup in lookups:
            self._looked_up_by.setdefault(lookup, set()).add(pod_key)
        if lookups:
            self._lookups_of[pod_key] = lookups
        else:
            del self._lookups_of[pod_key]

    def _set_budgets(self, pod_key: str, budget_keys: tuple[str, ...]) -> None:
        before = self._budgets_of.get(pod_key, ())
        if before == budget_keys:
            return
        _unindex(self._applies_to, before, pod_key)
        for key in budget_keys:
            self._applies_to.setdefault(key, set()).add(pod_key)
        if budget_keys:
            self._budgets_of[pod_key] = budget_keys
        else:
            del self._budgets_of[pod_key]


def _unindex(index: dict[Lookup, set[str]] | dict[str, set[str]], keys: Iterable[object], pod_key: str) -> None:
    for key in keys:
        pods = index[key]  # type: ignore[index]
        pods.discard(pod_key)
        if not pods:
            del index[key]  # type: ignore[arg-type]


def _all(spaces: Mapping[str, set[str]]) -> set[str]:
    return set().union(*spaces.values()) if spaces else set()
