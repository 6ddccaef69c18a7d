"""Shared helpers for the core benchmarks: timing with repeats, RSS, GC accounting, tables.

The machine these run on is small and shared, so absolute times wander from
run to run. Every benchmark therefore measures a baseline in the same
repetition as the thing it compares it with, and reports the median of the
per-repetition ratios next to the median time and its spread (min-max).
"""

from __future__ import annotations

import gc
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON_DEFAULT_GC = (700, 10, 10)


def command_line() -> str:
    """The exact command that produced the output, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return shlex.join([".venv/bin/python", shown, *sys.argv[1:]])


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, Python {sys.version.split()[0]}"


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; no psutil needed)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


class GcMeter:
    """Counts collections and the time spent in them, per generation, while installed."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.count[info["generation"]] += 1

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = 0.0

    @contextmanager
    def installed(self) -> Iterator[GcMeter]:
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)


@dataclass
class Series:
    """Repeated measurements of one thing, with the same-repetition baseline for each."""

    name: str
    times: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    gc_s: list[float] = field(default_factory=list)
    gc_full: list[int] = field(default_factory=list)
    note: str = ""

    def add(self, seconds: float, baseline: float | None, meter: GcMeter | None = None) -> None:
        self.times.append(seconds)
        if baseline:
            self.ratios.append(seconds / baseline)
        if meter is not None:
            self.gc_s.append(meter.seconds)
            self.gc_full.append(meter.count[2])

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(fn: Callable[[], object], meter: GcMeter | None = None) -> float:
    if meter is not None:
        meter.reset()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.1f} ms" if abs(seconds) < 10 else f"{seconds:.1f} s"


def spread(values: Sequence[float]) -> str:
    return f"{ms(min(values))}–{ms(max(values))}"


def ratio(values: Sequence[float]) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{med:.3f}×" if med < 0.1 else f"{med:.2f}×"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (pastes straight into BENCHMARKS.md)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def series_rows(series: Sequence[Series], *, with_gc: bool = True) -> list[list[str]]:
    rows = []
    for s in series:
        row = [s.name, ms(s.median), spread(s.times), ratio(s.ratios)]
        if with_gc:
            row += [ms(statistics.median(s.gc_s)) if s.gc_s else "—", str(max(s.gc_full)) if s.gc_full else "—"]
        rows.append([*row, s.note] if s.note else [*row, ""])
    return rows


SERIES_HEADERS = ["measurement", "median", "spread (min–max)", "÷ baseline", "in GC (median)", "full GCs (max)", "note"]


# -- the benchmark fleet ------------------------------------------------------------------

FILL_NAMESPACE = "bench-fill"


def filled_fleet(scale: int, target_pods: int, *, seed: int = 7):  # -> Fleet
    """The seeded demo fleet at `scale`, topped up with 1-device Job pods to `target_pods`.

    The extra pods take free devices (node by node, lowest index first), so every one is
    Running on a real GPU or MIG instance and the metrics attribute it, just as
    for the fleet's own pods. They live in a namespace without a quota (so the
    test bed's quota admission lets them in) and are adopted by Jobs of 8.
    """
    import random
    from dataclasses import replace

    from gpuctl.sim.catalog import POOL_LABEL
    from gpuctl.sim.fleet import SimNamespace, SimPod, build_fleet

    fleet = build_fleet(seed=seed, scale=scale)
    missing = target_pods - len(fleet.pods)
    if missing <= 0:
        return fleet
    rng = random.Random(seed + 1)
    taken = {k for p in fleet.pods for k in p.gpu_keys}
    free = [(node, gpu) for node in fleet.nodes for gpu in node.gpus if gpu.key not in taken]
    behaviours = ("busy", "busy", "busy", "bursty", "bursty", "idle")
    extra: list[SimPod] = []
    for i in range(missing):
        node, gpu = free[i % len(free)] if free else (fleet.nodes[i % len(fleet.nodes)], None)
        on_device = gpu is not None and i < len(free)
        job = f"fill-{node.pool}-{i // 8:04d}"
        suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        behaviour = behaviours[i % len(behaviours)]
        extra.append(
            SimPod(
                namespace=FILL_NAMESPACE,
                name=f"{job}-{suffix}",
                node=node.name if on_device else None,
                container="worker",
                gpu_requests={gpu.resource if gpu is not None else "nvidia.com/gpu": 1},
                owner_kind="Job",
                owner_name=job,
                ref_kind="Job",
                ref_name=job,
                priority_class="batch-low",
                labels={"job-name": job, "batch.kubernetes.io/job-name": job},
                gpu_keys=(gpu.key,) if on_device and gpu is not None else (),
                behaviour=behaviour,  # type: ignore[arg-type]
                pool=node.pool,
                node_selector={POOL_LABEL: node.pool},
                tolerations=node.taints,
                created_t=-rng.uniform(600, 86_400),
                idle_since_t=-rng.uniform(0, 7200) if behaviour == "idle" else None,
            )
        )
    namespaces = (*fleet.namespaces, SimNamespace(FILL_NAMESPACE, "batch", None))
    return replace(fleet, pods=(*fleet.pods, *extra), namespaces=namespaces)


def fleet_summary(fleet) -> str:
    running = sum(1 for p in fleet.pods if p.node is not None)
    held = sum(len(p.gpu_keys) for p in fleet.pods)
    return (
        f"{len(fleet.nodes):,} nodes, {fleet.physical_gpus:,} physical GPUs, {len(fleet.gpus):,} GPU devices "
        f"(MIG instances counted), {len(fleet.pods):,} GPU pods ({running:,} running, {held:,} devices held)"
    )


# -- API objects as kube-apiserver returns them -------------------------------------------

def _uid(name: str) -> str:
    import hashlib

    h = hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(start, t: float) -> str:
    from datetime import timedelta

    return (start + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_pod(pod, start, rv: int) -> dict:
    """A pod the way a LIST returns it: defaults, owner, managedFields, projected token volume, status.

    Built on the test bed's own pod object (testbed.fleet_loader.pod_object) plus
    what the API server, the controllers and a kubelet add; about 4.3 KB of JSON,
    in line with a small real single-container pod.
    """
    from testbed.fleet_loader import IMAGE, pod_object

    obj = pod_object(pod)
    created = _ts(start, pod.created_t)
    meta = obj["metadata"]
    meta.update(uid=_uid(pod.key), resourceVersion=str(rv), generation=1, creationTimestamp=created)
    if pod.ref_kind:
        api = {"Job": "batch/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1"}.get(pod.ref_kind, "v1")
        meta["ownerReferences"] = [
            {"apiVersion": api, "kind": pod.ref_kind, "name": pod.ref_name, "uid": _uid(f"{pod.namespace}/{pod.ref_name}"),
             "controller": True, "blockOwnerDeletion": True}
        ]
    meta["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": created,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in pod.labels},
         "f:ownerReferences": {".": {}}}, "f:spec": {"f:containers": {f'k:{{"name":"{pod.container}"}}': {
         ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {".": {}, "f:limits": {}},
         "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}}, "f:dnsPolicy": {}, "f:nodeSelector": {},
         "f:priorityClassName": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {},
         "f:terminationGracePeriodSeconds": {}, "f:tolerations": {}}}},
        {"manager": "kwok", "operation": "Update", "apiVersion": "v1", "time": created, "fieldsType": "FieldsV1",
         "subresource": "status", "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {},
         "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}},
    ]
    spec = obj["spec"]
    container = spec["containers"][0]
    token = f"kube-api-access-{pod.name[-5:]}"
    container["resources"]["requests"] = dict(container["resources"]["limits"])
    container.update(
        terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File", imagePullPolicy="IfNotPresent",
        volumeMounts=[{"name": token, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
    )
    spec.update(
        volumes=[{"name": token, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}],
        restartPolicy="Never" if pod.ref_kind == "Job" else "Always", dnsPolicy="ClusterFirst",
        serviceAccountName="default", serviceAccount="default", securityContext={}, schedulerName="default-scheduler",
        priority=100, enableServiceLinks=True, preemptionPolicy="PreemptLowerPriority",
    )
    spec["tolerations"] = spec.get("tolerations", []) + [
        {"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for t in ("not-ready", "unreachable")
    ]
    if pod.node is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastProbeTime": None,
             "lastTransitionTime": created, "message": "0/1375 nodes are available: insufficient nvidia.com/gpu."}]}
        return obj
    obj["status"] = {
        "phase": "Running",
        "conditions": [{"type": c, "status": "True", "lastProbeTime": None, "lastTransitionTime": created}
                       for c in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "hostIP": "10.20.30.40", "hostIPs": [{"ip": "10.20.30.40"}], "podIP": "10.64.1.2", "podIPs": [{"ip": "10.64.1.2"}],
        "startTime": created, "qosClass": "BestEffort",
        "containerStatuses": [{"name": pod.container, "state": {"running": {"startedAt": created}}, "lastState": {},
                               "ready": True, "restartCount": 0, "image": IMAGE, "imageID": f"{IMAGE}@sha256:{'ab' * 32}",
                               "containerID": f"containerd://{_uid(pod.key).replace('-', '') * 2}", "started": True}],
    }
    return obj


def api_node(node, start, rv: int) -> dict:
    """A node the way a LIST returns it (test bed node object + conditions, addresses, nodeInfo)."""
    from testbed.fleet_loader import node_object

    obj = node_object(node)
    created = _ts(start, node.created_t)
    obj["metadata"].update(uid=_uid(node.name), resourceVersion=str(rv), creationTimestamp=created)
    obj["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = "0"
    obj["spec"]["podCIDR"] = "10.64.0.0/24"
    obj["spec"]["providerID"] = f"aws:///us-east-1a/i-{_uid(node.name)[:17].replace('-', '')}"
    status = obj["status"]
    status["conditions"] = [
        {"type": t, "status": s, "lastHeartbeatTime": created, "lastTransitionTime": created, "reason": r, "message": m}
        for t, s, r, m in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        )
    ]
    status["addresses"] = [{"type": "InternalIP", "address": "10.20.30.40"}, {"type": "Hostname", "address": node.name}]
    status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": 10250}}
    status["nodeInfo"] = {"machineID": _uid(node.name), "systemUUID": _uid(node.name), "bootID": _uid(node.name),
                          "kernelVersion": "6.1.0", "osImage": "Ubuntu 22.04.4 LTS", "containerRuntimeVersion": "containerd://1.7.13",
                          "kubeletVersion": "v1.34.4", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}
    return obj


def list_pages(kind: str, objects: list[dict], page: int = 500) -> list[bytes]:
    """The JSON bodies of a paginated LIST (the reflector's PAGE_SIZE is 500)."""
    import json

    pages = []
    for i in range(0, len(objects), page):
        more = i + page < len(objects)
        meta = {"resourceVersion": "99999", **({"continue": f"token-{i + page}"} if more else {})}
        pages.append(json.dumps({"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta,
                                 "items": objects[i:i + page]}).encode())
    return pages
