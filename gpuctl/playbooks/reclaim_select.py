"""reclaim-idle-gpus: which pods to evict, from the live picture (pure; no I/O).

`select_idle_pods` applies the playbook's target selection and guardrails to a
Snapshot and says, for every pod it left out that looked reclaimable (none of
its GPUs busy, at least one idle), why. The planner then re-reads the chosen
pods from the API server (fresh uid, resourceVersion and annotations) before
the plan is shown.

A pod qualifies only when every device it requested (whole GPUs and MIG
instances) is measured, fresh and idle, each for at least `idle_for`: an
unmeasured or stale GPU is never evidence of idleness, and stale metrics block
the whole plan. Time-sliced GPUs are never reclaimed: the metrics of a shared
GPU cannot say which of its pods uses it.

Given `pods` (the parameter: namespace/name), only those pods are considered,
and each one is accounted for: chosen, left out with why, or unknown (not a GPU
pod in the picture; the planner asks the API server which).

`spare_reasons` is the same test at execution time: a pod whose GPUs were
busy at any moment since the plan is spared (guardrail spare_if_busy_again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gpuctl.model import Gpu, GpuPod, Snapshot
from gpuctl.playbooks.node_pods import GUARDRAIL_LABELS
from gpuctl.playbooks.node_pods import protection as kept_by
from gpuctl.playbooks.spec import Guardrails, Protected
from gpuctl.render.format import duration, pct


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pod left out, with the reason a person reads and a short label for counting (e.g. 'too young')."""

    pod: GpuPod
    reason: str
    label: str
    idle_s: float  # its shortest GPU idle time, 0 when unknown: left-out pods are listed longest-idle first


@dataclass(frozen=True, slots=True)
class Choice:
    pod: GpuPod
    idle_s: float  # every one of its GPUs has been idle at least this long


@dataclass(frozen=True, slots=True)
class Selection:
    chosen: tuple[Choice, ...]
    left_out: tuple[Candidate, ...]  # longest-idle first
    blocked: tuple[str, ...]  # reasons nothing may be reclaimed at all
    unknown: tuple[str, ...] = ()  # named pods (namespace/name) the live picture has no GPU pod for


@dataclass(frozen=True, slots=True)
class Limits:
    """The run's effective limits: each parameter capped by its guardrail."""

    idle_for_s: float
    min_age_s: float
    max_pods: int
    max_gpus: int

    @classmethod
    def of(cls, guardrails: Guardrails, *, idle_for_s: float, max_pods: int, max_gpus: int) -> Limits:
        return cls(
            idle_for_s=idle_for_s,
            min_age_s=max(idle_for_s, guardrails.min_pod_age or 0.0),
            max_pods=min(max_pods, guardrails.max_pods or max_pods),
            max_gpus=min(max_gpus, guardrails.max_gpus or max_gpus),
        )


def protection(pod: GpuPod, protected: Protected) -> tuple[str, str] | None:
    """(reason, label) when the guardrails or the pod's controller keep it out of reach (node_pods.protection), else None.

    The snapshot carries no annotations: the chosen pods' annotations are checked when they are read again."""
    kept = kept_by(
        protected,
        namespace=pod.namespace,
        priority_class=pod.priority_class,
        controller=pod.owners[0].kind if pod.owners else None,
        labels=pod.labels,
        annotations={},
    )
    return None if kept is None else (kept.reason, kept.label)


def devices(pod: GpuPod) -> int:
    """Whole GPUs and MIG instances requested: what the pod holds once running (time-slices excluded)."""
    return pod.gpus + sum(pod.mig.values())


def measured_idle(
    pod: GpuPod, gpus_by_key: Mapping[str, Gpu], shared_nodes: frozenset[str], *, idle_window_s: float
) -> tuple[float | None, str | None]:
    """(seconds every one of its GPUs has been idle, None) or (None, why that cannot be said).

    Every requested device must be measured (a GPU row attributed to the pod), fresh and idle by
    gpuctl's definition (under the threshold for the whole idle window)."""
    if pod.gpu_slices or (pod.node in shared_nodes and pod.gpus):
        return None, "holds time-sliced GPUs: a shared GPU's metrics cannot say which pod uses it"
    keys = tuple(dict.fromkeys(pod.gpu_keys))
    wanted = devices(pod)
    if len(keys) < wanted:
        return None, f"only {len(keys)} of its {wanted} GPUs are measured" if keys else f"none of its {wanted} GPUs is measured"
    shortest: float | None = None
    for key in keys:
        gpu = gpus_by_key.get(key)
        if gpu is None:
            return None, f"GPU {key} is not in the metrics"
        if gpu.stale:
            return None, f"metrics for GPU {key} are stale"
        if gpu.busy:
            return None, f"GPU {key} is busy ({pct(gpu.util_pct)})"
        if not gpu.idle or gpu.idle_for_s is None:
            return None, f"GPU {key} has not been idle for the whole idle window ({duration(idle_window_s)}) yet"
        shortest = gpu.idle_for_s if shortest is None else min(shortest, gpu.idle_for_s)
    return shortest, None


def _looks_reclaimable(pod: GpuPod, gpus_by_key: Mapping[str, Gpu]) -> bool:
    """None of its GPUs busy and at least one idle: a pod a person might ask about. Others are not listed."""
    idle = False
    for key in pod.gpu_keys:
        gpu = gpus_by_key.get(key)
        if gpu is not None:
            if gpu.busy:
                return False
            idle = idle or gpu.idle
    return idle


def _shared_nodes(snapshot: Snapshot) -> frozenset[str]:
    return frozenset(n.name for n in snapshot.nodes if n.gpu_replicas > 1)


def select_idle_pods(
    snapshot: Snapshot,
    guardrails: Guardrails,
    limits: Limits,
    *,
    namespace: str | None = None,
    pool: str | None = None,
    node: str | None = None,
    pods: tuple[str, ...] | None = None,
) -> Selection:
    """Longest-idle first (then more GPUs, then by key), within max_pods and max_gpus.

    A pod too large for what is left of max_gpus is passed over for smaller ones after it.
    With `protected.on_match: refuse`, a protected pod that is otherwise reclaimable blocks the plan.
    `pods` (namespace/name keys) confines the choice to exactly those: every one the picture holds is
    either chosen or left out with why (busy ones too, since they were asked for), and the rest are `unknown`."""
    named = None if pods is None else frozenset(pods)
    if snapshot.metrics.stale:
        error = snapshot.metrics.error or "no recent metrics"
        return Selection((), (), (f"GPU metrics are stale ({error}): an unmeasured GPU is not an idle one; try again later",))
    gpus_by_key = {g.key: g for g in snapshot.gpus}
    pools_by_node = {n.name: n.pool for n in snapshot.nodes}
    shared = _shared_nodes(snapshot)
    now = snapshot.taken_at
    blocked: list[str] = []
    eligible: list[Choice] = []
    left_out: list[Candidate] = []
    seen: set[str] = set()
    for pod in snapshot.pods:
        if named is not None:
            if pod.key not in named:
                continue
            seen.add(pod.key)
        outside = _outside(pod, namespace, node, pool, pools_by_node.get(pod.node or ""))
        if outside is not None:
            if named is not None:  # asked for by name: say why it is not taken
                left_out.append(Candidate(pod, outside, "outside the scope", 0.0))
            continue
        if named is None and not _looks_reclaimable(pod, gpus_by_key):
            continue
        idle_s, why = _why_not(pod, gpus_by_key, shared, now, limits, guardrails.protected, snapshot.idle_window_s)
        if why is None and idle_s is not None:
            eligible.append(Choice(pod, idle_s))
            continue
        reason, label = why or ("not idle", "not idle")
        if label in GUARDRAIL_LABELS and guardrails.protected.on_match == "refuse":
            blocked.append(f"{pod.key}: {reason}; this playbook refuses to run while it is in scope")
        left_out.append(Candidate(pod, reason, label, idle_s or 0.0))

    eligible.sort(key=lambda c: (-c.idle_s, -devices(c.pod), c.pod.key))
    chosen: list[Choice] = []
    gpus = 0
    for choice in eligible:
        pod = choice.pod
        if len(chosen) >= limits.max_pods:
            left_out.append(Candidate(pod, f"over max_pods={limits.max_pods} for one run", "over max_pods", choice.idle_s))
        elif gpus + devices(pod) > limits.max_gpus:
            reason = f"its {devices(pod)} GPUs would pass max_gpus={limits.max_gpus} for one run ({gpus} chosen before it)"
            left_out.append(Candidate(pod, reason, "over max_gpus", choice.idle_s))
        else:
            chosen.append(choice)
            gpus += devices(pod)
    left_out.sort(key=lambda c: (-c.idle_s, c.pod.key))
    unknown = tuple(key for key in pods or () if key not in seen)
    return Selection(tuple(chosen), tuple(left_out), tuple(blocked), unknown)


def _outside(pod: GpuPod, namespace: str | None, node: str | None, pool: str | None, pod_pool: str | None) -> str | None:
    """Why the pod lies outside the namespace, node or pool the run is narrowed to, or None."""
    if namespace is not None and pod.namespace != namespace:
        return f"outside namespace={namespace}"
    if node is not None and pod.node != node:
        return f"on node {pod.node or '(none)'}, outside node={node}"
    if pool is not None and pod_pool != pool:
        return f"in pool {pod_pool or '(none)'}, outside pool={pool}"
    return None


def _why_not(
    pod: GpuPod,
    gpus_by_key: Mapping[str, Gpu],
    shared: frozenset[str],
    now: datetime,
    limits: Limits,
    protected: Protected,
    idle_window_s: float,
) -> tuple[float | None, tuple[str, str] | None]:
    """(idle seconds if measured, None) for an eligible pod, else (idle seconds or None, (reason, label))."""
    if pod.phase != "Running" or pod.node is None:
        return None, (f"phase {pod.phase}", "not running")
    if (kept := protection(pod, protected)) is not None:
        return None, kept
    if pod.uid is None:
        return None, ("no uid (not read from the Kubernetes API): it cannot be evicted safely", "no uid")
    idle_s, unmeasured = measured_idle(pod, gpus_by_key, shared, idle_window_s=idle_window_s)
    if idle_s is None:
        return None, (unmeasured or "not idle", "not measured idle")
    if idle_s < limits.idle_for_s:
        return idle_s, (f"idle {duration(idle_s)}, under idle_for={duration(limits.idle_for_s)}", "idle too briefly")
    age_s = None if pod.created is None else (now - pod.created).total_seconds()
    if age_s is None:
        return idle_s, ("its age is unknown", "too young")
    if age_s < limits.min_age_s:
        return idle_s, (f"{duration(age_s)} old, younger than {duration(limits.min_age_s)}", "too young")
    if len(pod.pdbs) > 1:
        budgets = ", ".join(f"{pod.namespace}/{name}" for name in pod.pdbs)
        return idle_s, (
            f"under {len(pod.pdbs)} PodDisruptionBudgets ({budgets}): the Eviction API refuses such pods",
            "several PDBs",
        )
    return idle_s, None


def spare_reasons(snapshot: Snapshot, pods: Mapping[str, str | None], since: datetime) -> dict[str, str | None]:
    """For each pod (key → planned uid): why it must be spared now, or None to go ahead.

    Used right before evicting: the pod must still be in the live picture with the same uid, its
    every GPU measured, fresh and idle, and idle at least since `since` (the plan's time), so a burst
    of work during a staged run's grace period spares it even if its GPUs are quiet again."""
    if snapshot.metrics.stale:
        error = snapshot.metrics.error or "no recent metrics"
        return dict.fromkeys(pods, f"GPU metrics are stale ({error}): cannot tell whether it is still idle")
    if snapshot.taken_at < since:
        taken = f"{snapshot.taken_at:%H:%M:%S} UTC"
        return dict.fromkeys(pods, f"the live picture ({taken}) is older than the plan: cannot tell whether it is still idle")
    live = {p.key: p for p in snapshot.pods if p.key in pods}
    gpus_by_key = {g.key: g for g in snapshot.gpus}
    shared = _shared_nodes(snapshot)
    needed = (snapshot.taken_at - since).total_seconds()
    reasons: dict[str, str | None] = {}
    for key, uid in pods.items():
        pod = live.get(key)
        if pod is None:
            reasons[key] = "no longer in the live picture (gone, or holding no GPU): not evicted blindly"
        elif uid is not None and pod.uid != uid:
            reasons[key] = "replaced by another pod of that name since the plan"
        else:
            idle_s, why = measured_idle(pod, gpus_by_key, shared, idle_window_s=snapshot.idle_window_s)
            if idle_s is None:
                reasons[key] = f"busy again or no longer measured idle: {why}"
            elif idle_s < needed:
                reasons[key] = f"busy again since the plan: its GPUs have been idle only {duration(idle_s)}"
            else:
                reasons[key] = None
    return reasons
