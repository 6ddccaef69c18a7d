"""DCGM metrics and idle GPUs, in the core's terms (gpuctl.query.states): an idle GPU is one *measured* under the
idle threshold for the whole idle window; a stale or unmeasured GPU is never idle. Missing measurements are
findings of their own: a GPU node with no DCGM series, series without pod labels, readings that stopped moving.

These checks need metrics: with no metrics source, or one that never answered, they say nothing (the report's
`skipped` says why).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gpuctl.doctor.findings import Check, Finding, Involved, Severity, finding, node, pod
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.scheduling import is_gpu_node
from gpuctl.model import Gpu, Snapshot
from gpuctl.query.states import PodState, pod_state
from gpuctl.render.format import duration

IDLE = Check(
    id="gpus.idle",
    severity=Severity.WARNING,
    title="GPUs allocated but idle",
    why="The pod holds GPUs it has not used for the whole idle window: capacity paid for that nobody, including "
    "pending pods, can use.",
    fix="Ask the owner to scale the workload down or release the GPUs; `gpuctl playbook run reclaim-idle-gpus` "
    "evicts idle pods with notice, respecting their PodDisruptionBudgets.",
)
NO_DCGM = Check(
    id="metrics.no-dcgm",
    severity=Severity.WARNING,
    title="GPU node without DCGM metrics",
    why="Nothing measures its GPUs: idle, hot or failing GPUs there go unseen, and no alert can fire for them.",
    fix="Run dcgm-exporter on the node (GPU Operator: dcgmExporter.enabled) and make sure Prometheus scrapes it "
    "(ServiceMonitor, or a scrape job with the node's exporter as a target).",
)
NO_POD_LABELS = Check(
    id="metrics.no-pod-attribution",
    severity=Severity.WARNING,
    title="DCGM metrics without pod attribution",
    why="GPUs held by pods report no pod/namespace labels: usage cannot be charged to a team, and idle GPUs "
    "cannot be traced to the pod holding them (gpuctl cannot call them idle).",
    fix="Run dcgm-exporter with Kubernetes mapping (DCGM_EXPORTER_KUBERNETES=true, the pod-resources socket "
    "mounted); with Prometheus target labels, keep the exported_pod/exported_namespace labels.",
)
STALE = Check(
    id="metrics.stale",
    severity=Severity.WARNING,
    title="GPU readings stopped",
    why="The GPUs' readings stopped arriving or stopped moving (a hung DCGM, a target no longer scraped): their "
    "values are old, so they are neither busy nor idle, and alerts on them are blind.",
    fix="Restart the node's dcgm-exporter (and nv-hostengine); check the Prometheus target's health.",
)
CHECKS = (IDLE, NO_DCGM, NO_POD_LABELS, STALE)


def measured(snapshot: Snapshot) -> bool:
    """Whether metrics arrived at least once: without that, no metrics finding means anything."""
    return snapshot.metrics.source != "none" and snapshot.metrics.last_success is not None


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    snapshot = inv.snapshot
    if not measured(snapshot):
        return
    threshold = snapshot.idle_threshold_pct
    for p in snapshot.pods:
        if pod_state(p, threshold) is PodState.IDLE:
            detail = (
                f"{p.gpus_total} GPU device(s) under {threshold:g}% for {duration(p.idle_for_s)} "
                f"(window {duration(snapshot.idle_window_s)}) on {p.node}"
            )
            yield finding(IDLE, detail, pod(p.namespace, p.name))
    by_node: dict[str, list[Gpu]] = defaultdict(list)
    for gpu in snapshot.gpus:
        by_node[gpu.node].append(gpu)
    holders: dict[str, list[str]] = defaultdict(list)
    for p in snapshot.pods:
        if p.node and p.phase == "Running":
            holders[p.node].append(p.key)
    for n in snapshot.nodes:
        gpus = [g for g in by_node.get(n.name, ()) if has_readings(g)]
        if not gpus:
            if is_gpu_node(n):
                yield finding(NO_DCGM, "no DCGM series name this node", node(n.name))
            continue
        stale = [g for g in gpus if g.stale]
        if stale:
            keys = ", ".join(g.key for g in stale)
            yield finding(STALE, f"{len(stale)} of {len(gpus)} device(s): {keys}", node(n.name))
        fresh = [g for g in gpus if not g.stale]
        if fresh and holders.get(n.name) and not any(g.pod for g in fresh):
            pods = sorted(holders[n.name])
            detail = f"{len(fresh)} device(s) report no pod while {len(pods)} GPU pod(s) run there: {', '.join(pods)}"
            yield finding(NO_POD_LABELS, detail, node(n.name), *(_pod(k) for k in pods))


def has_readings(gpu: Gpu) -> bool:
    """Whether any DCGM series named this device (the join lists a GPU node's devices even without any)."""
    return any(v is not None for v in (gpu.util_pct, gpu.mem_used_mib, gpu.temp_c, gpu.power_w))


def _pod(key: str) -> Involved:
    namespace, name = key.split("/", 1)
    return pod(namespace, name)
