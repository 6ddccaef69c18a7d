"""Which PodDisruptionBudgets the Eviction API checks for a pod, and whether it would let it go now.

The rules are the API server's (kubernetes pkg/registry/core/pod/storage/eviction.go at
v1.34, checked against the test bed's kube-apiserver by tests/integration/test_workloads.py):

* a budget applies to the pods of its own namespace its selector matches; an
  empty selector (`{}`) matches every one of them (policy/v1; releases before
  the fix skipped empty selectors), a missing or invalid one none;
* Pending, Succeeded and Failed pods and pods already terminating are deleted
  without looking at budgets;
* more than one budget: the Eviction API refuses (500), whatever they allow;
* one budget: an unready pod goes when the budget is healthy without it
  (currentHealthy >= desiredHealthy > 0); otherwise the budget must have been
  observed at its latest generation (else 429, retry) and allow a disruption.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gpuctl.state.records import PdbRecord
from gpuctl.state.selectors import EQUALS, IN, Requirement

SKIPS_BUDGETS = frozenset({"Pending", "Succeeded", "Failed"})


def applies(pdb: PdbRecord, labels: Mapping[str, str]) -> bool:
    """The Eviction API checks `pdb` for a pod with these labels (in the same namespace)."""
    return pdb.selector is not None and pdb.selector.matches(labels)


def budgets_for(labels: Mapping[str, str], candidates: Iterable[PdbRecord]) -> list[PdbRecord]:
    """The budgets among `candidates` (those of the pod's namespace) that apply to the pod, by name."""
    return sorted((pdb for pdb in candidates if applies(pdb, labels)), key=lambda pdb: pdb.name)


class BudgetIndex:
    """The budgets of every namespace, found for a pod by its labels instead of tried one by one.

    A budget is filed under the label values one of its terms requires (`app=web`, or
    each value of `tier in (a,b)`): a pod can only match it if it has one of them. A
    budget with no such term (`{}`, only NotIn/Exists/DoesNotExist) is filed under
    None, tried for every pod of its namespace; one with a missing selector matches
    nothing and is not filed. `for_pod` gives what `budgets_for` gives over every
    budget of the namespace, at the cost of the pod's labels, not of the namespace's
    budgets (hundreds in one namespace is common: one per Deployment)."""

    def __init__(self) -> None:
        self._budgets: dict[str, dict[str, PdbRecord]] = {}  # namespace -> budget key -> record
        self._filed: dict[str, dict[tuple[str, str] | None, set[str]]] = {}  # namespace -> label=value -> budget keys

    def get(self, namespace: str, key: str) -> PdbRecord | None:
        space = self._budgets.get(namespace)
        return space.get(key) if space is not None else None

    def put(self, namespace: str, key: str, pdb: PdbRecord | None) -> None:
        """File `pdb` under `key` in `namespace`, in place of the budget there before (None: remove it)."""
        old = self.get(namespace, key)
        if old is not None:
            self._file(namespace, key, old, remove=True)
            space = self._budgets[namespace]
            del space[key]
            if not space:
                del self._budgets[namespace]
        if pdb is not None:
            self._budgets.setdefault(namespace, {})[key] = pdb
            self._file(namespace, key, pdb, remove=False)

    def for_pod(self, namespace: str, labels: Mapping[str, str]) -> list[PdbRecord]:
        """`budgets_for(labels, <every budget of namespace>)`: those that apply, by name."""
        filed = self._filed.get(namespace)
        if filed is None:
            return []
        keys = set(filed.get(None, ()))
        for item in labels.items():
            found = filed.get(item)
            if found is not None:
                keys.update(found)
        space = self._budgets[namespace]
        return budgets_for(labels, (space[k] for k in keys))

    def _file(self, namespace: str, key: str, pdb: PdbRecord, *, remove: bool) -> None:
        if pdb.selector is None:
            return  # matches no pod
        term = _filing_term(pdb.selector.requirements)
        places: list[tuple[str, str] | None] = [None] if term is None else [(term.key, v) for v in term.values]
        filed = self._filed.setdefault(namespace, {})
        for place in places:
            keys = filed.setdefault(place, set())
            if remove:
                keys.discard(key)
                if not keys:
                    del filed[place]
            else:
                keys.add(key)
        if not filed:
            del self._filed[namespace]


def _filing_term(requirements: Sequence[Requirement]) -> Requirement | None:
    """The term a pod's labels must satisfy by equality (the fewest values), if any."""
    terms = [r for r in requirements if r.operator in (EQUALS, IN)]
    return min(terms, key=lambda r: len(r.values)) if terms else None


def eviction_allowed(*, phase: str, deleting: bool, ready: bool, budgets: Sequence[PdbRecord] | None) -> bool | None:
    """Whether an eviction of the pod would pass the budget check now.

    `budgets`: those that apply (`budgets_for`), or None when they are unknown (not
    listed yet, or not readable): then the answer is None unless the pod skips budgets.
    """
    if phase in SKIPS_BUDGETS or deleting:
        return True
    if budgets is None:
        return None
    if len(budgets) > 1:
        return False
    if not budgets:
        return True
    pdb = budgets[0]
    if not ready and pdb.current_healthy >= pdb.desired_healthy and pdb.desired_healthy > 0:
        return True
    return pdb.observed and pdb.disruptions_allowed > 0
