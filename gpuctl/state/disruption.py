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

SKIPS_BUDGETS = frozenset({"Pending", "Succeeded", "Failed"})


def applies(pdb: PdbRecord, labels: Mapping[str, str]) -> bool:
    """The Eviction API checks `pdb` for a pod with these labels (in the same namespace)."""
    return pdb.selector is not None and pdb.selector.matches(labels)


def budgets_for(labels: Mapping[str, str], candidates: Iterable[PdbRecord]) -> list[PdbRecord]:
    """The budgets among `candidates` (those of the pod's namespace) that apply to the pod, by name."""
    return sorted((pdb for pdb in candidates if applies(pdb, labels)), key=lambda pdb: pdb.name)


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
