"""PriorityClasses: GPU workloads have classes, and only the important ones preempt.

A "low" class is one named like batch/low/best-effort/preemptible/spot/scavenger, or the lowest-valued of two
or more classes GPU pods use: it should have `preemptionPolicy: Never`, or a batch job evicts running work.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from gpuctl.doctor.findings import Check, Finding, Involved, Severity, finding, pod
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions

LOW_NAME = re.compile(r"batch|low|best-?effort|preemptible|spot|scavenger|opportunistic", re.IGNORECASE)

NONE = Check(
    id="priority.none",
    severity=Severity.WARNING,
    title="no PriorityClasses for GPU workloads",
    why="Without classes every GPU pod has the same priority: the scheduler cannot let serving preempt batch "
    "when GPUs run out, and pending inference waits behind training.",
    fix="Create PriorityClasses (e.g. inference-critical, training-standard, batch-low with "
    "preemptionPolicy: Never) and set priorityClassName in GPU pod templates.",
)
POD_WITHOUT_CLASS = Check(
    id="priority.pod-without-class",
    severity=Severity.INFO,
    title="GPU pods without a priorityClassName",
    why="They run at the default priority (0 or the globalDefault class): the first to be preempted or the "
    "ones nobody can preempt, by accident rather than by decision.",
    fix="Set spec.priorityClassName in their pod templates (or make one class globalDefault on purpose).",
)
LOW_PREEMPTS = Check(
    id="priority.low-preempts",
    severity=Severity.WARNING,
    title="low-priority GPU class may preempt",
    why="Its pods evict lower-priority running pods to get GPUs: a batch or scavenger job kills work that has "
    "been running for hours, for a job that is itself meant to wait.",
    fix="Set preemptionPolicy: Never on the class (a new class: the field is immutable), keeping "
    "PreemptLowerPriority for serving/critical classes only.",
)
CHECKS = (NONE, POD_WITHOUT_CLASS, LOW_PREEMPTS)


def user_classes(classes: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The PriorityClasses not built into Kubernetes (system-*), by name."""
    return {
        name: c for c in classes if not (name := str((c.get("metadata") or {}).get("name", ""))).startswith("system-")
    }


def low_classes(used: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The classes among `used` (by name) meant to wait: named so, or the lowest of two or more."""
    low = {name for name in used if LOW_NAME.search(name)}
    if len(used) >= 2:
        lowest = min(int(c.get("value") or 0) for c in used.values())
        low |= {name for name, c in used.items() if int(c.get("value") or 0) == lowest}
    return low


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    pods = inv.snapshot.pods
    if not pods:
        return
    without: dict[str, list[str]] = defaultdict(list)
    for p in pods:
        if p.priority_class is None:
            without[p.namespace].append(p.name)
    for ns in sorted(without):
        names = sorted(without[ns])
        yield finding(POD_WITHOUT_CLASS, f"{len(names)} GPU pod(s) in {ns}", *(pod(ns, n) for n in names))
    if inv.priority_classes is None:
        return
    classes = user_classes(inv.priority_classes)
    if not classes:
        yield finding(NONE, "only the built-in system-* classes exist")
        return
    used = {name: classes[name] for name in {p.priority_class for p in pods} if name in classes}
    for name in sorted(low_classes(used)):
        policy = used[name].get("preemptionPolicy") or "PreemptLowerPriority"
        if policy != "Never":
            detail = f"value {used[name].get('value')}, preemptionPolicy {policy}"
            yield finding(LOW_PREEMPTS, detail, Involved(kind="PriorityClass", name=name))
