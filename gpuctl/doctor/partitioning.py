"""MIG and time-slicing: MIG reconfigurations that failed or hang, pools that mix MIG strategies, and
time-sliced GPUs whose users were not told they share memory.

How long a reconfiguration has been pending is read from the node's managedFields: the time of the last
write by the manager that set `nvidia.com/mig.config.state` (the MIG manager writes nothing more while it
waits, so that is when `pending` was set, or later).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gpuctl.doctor.findings import Check, Finding, Severity, finding, node
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.render.format import duration

STATE_LABEL = "nvidia.com/mig.config.state"
STRATEGY_LABEL = "nvidia.com/mig.strategy"
TIME_SLICING_NOTE = "gpuctl.io/time-slicing-note"

MIG_FAILED = Check(
    id="mig.failed",
    severity=Severity.CRITICAL,
    title="MIG reconfiguration failed",
    why="The MIG manager could not apply nvidia.com/mig.config (an unknown config name, GPUs in use, a mode "
    "change that needs a reboot): the node advertises a layout nobody asked for, or no GPUs at all.",
    fix="Read the nvidia-mig-manager pod's log on the node; fix the config name or free the GPUs, then set "
    "nvidia.com/mig.config to another value and back (re-setting the same value does not retry).",
)
MIG_PENDING = Check(
    id="mig.pending",
    severity=Severity.WARNING,
    title="MIG reconfiguration pending too long",
    why="The MIG manager is stuck (typically waiting for GPU operand pods to stop): the GPU operator's pods "
    "stay paused and the node advertises no GPUs until it finishes.",
    fix="Check the nvidia-mig-manager log and the node's nvidia.com/gpu.deploy.* labels (paused-for-mig-change); "
    "evict what still uses the GPUs, or restart the mig-manager pod.",
)
MIXED_STRATEGIES = Check(
    id="mig.mixed-strategies",
    severity=Severity.WARNING,
    title="MIG strategies mixed in one pool",
    why="Nodes of one pool advertise MIG devices differently (single: nvidia.com/gpu, mixed: nvidia.com/mig-*): "
    "the same pod spec fits some nodes and not others, and quotas on one resource name miss the rest.",
    fix="Use one strategy per pool (ClusterPolicy spec.mig.strategy is cluster-wide): move the odd nodes to a "
    "pool of their own, or relabel them.",
)
TIME_SLICING = Check(
    id="timeslicing.no-isolation-note",
    severity=Severity.INFO,
    title="time-sliced GPUs without a note on memory isolation",
    why="Time-slicing shares a GPU's memory with no isolation: one tenant can run the others out of memory, and "
    "their users cannot tell from the node that it is so.",
    fix=f"Annotate the node (or its pool template) with {TIME_SLICING_NOTE}: a sentence for users, e.g. "
    "\"shared GPU: no memory isolation, keep each pod under 1/N of the memory\"; use MIG where isolation matters.",
)
CHECKS = (MIG_FAILED, MIG_PENDING, MIXED_STRATEGIES, TIME_SLICING)


def state_set_at(raw_node: Mapping[str, Any]) -> datetime | None:
    """When the manager that owns the MIG state label last wrote the node (from managedFields)."""
    for entry in (raw_node.get("metadata") or {}).get("managedFields") or ():
        labels = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:labels") or {}
        if f"f:{STATE_LABEL}" in labels and entry.get("time"):
            return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
    return None


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    snapshot = inv.snapshot
    raw = inv.nodes or {}
    for n in snapshot.nodes:
        if n.mig_config_state == "failed":
            yield finding(MIG_FAILED, f"nvidia.com/mig.config={n.mig_config}", node(n.name))
        elif n.mig_config_state == "pending":
            since = state_set_at(raw[n.name]) if n.name in raw else None
            age = None if since is None else (snapshot.taken_at - since).total_seconds()
            if age is None or age > options.mig_pending_after_s:
                detail = f"nvidia.com/mig.config={n.mig_config}, pending for {duration(age, 'an unknown time')}"
                yield finding(MIG_PENDING, detail, node(n.name))
        if (n.gpu_replicas > 1 or n.gpu_slices_allocatable) and n.name in raw:
            annotations = (raw[n.name].get("metadata") or {}).get("annotations") or {}
            if not str(annotations.get(TIME_SLICING_NOTE, "")).strip():
                yield finding(TIME_SLICING, f"{n.gpu_replicas} slices per GPU", node(n.name))
    strategies: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for n in snapshot.nodes:
        labels = (raw.get(n.name, {}).get("metadata") or {}).get("labels") or {}
        strategy = labels.get(STRATEGY_LABEL)
        if strategy and strategy != "none":
            strategies[n.pool][strategy].append(n.name)
    for pool in sorted(strategies):
        if len(strategies[pool]) > 1:
            parts = "; ".join(f"{s}: {', '.join(sorted(names))}" for s, names in sorted(strategies[pool].items()))
            names = sorted(name for group in strategies[pool].values() for name in group)
            yield finding(MIXED_STRATEGIES, f"pool {pool}: {parts}", *(node(name) for name in names))
