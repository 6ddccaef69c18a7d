"""Everything the doctor's checks read, gathered once, read-only.

The live picture comes from the core (`gpuctl.service.open_cluster`: nodes, GPU
pods, quotas, GPUs with their idle/stale state, metrics health). What the
watchers do not keep — pod tolerations, Jobs' status and TTL, LimitRanges,
PriorityClasses, node annotations and managedFields, Prometheus's rules — is
read here as one-shot lists (GET only) on a connection of the same settings.

A part that cannot be read (RBAC forbids a list, no Prometheus URL, the demo
has no API server) is None, with a line in `skipped` saying why: the checks
that need it say nothing rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuctl.config import Settings
from gpuctl.doctor.rules import Rule, parse_api_rules, read_rule_file
from gpuctl.model import Snapshot
from gpuctl.sources.kube.trim import pod_gpu_requests

if TYPE_CHECKING:
    from gpuctl.service import Cluster

JSON = Mapping[str, Any]
PAGE = "500"


@dataclass(frozen=True)
class Inventory:
    snapshot: Snapshot
    context: str | None = None
    nodes: Mapping[str, JSON] | None = None  # GPU nodes as the API serves them, by name
    pods: Mapping[str, JSON] | None = None  # GPU pods as the API serves them, by namespace/name
    jobs: Sequence[JSON] | None = None
    limit_ranges: Sequence[JSON] | None = None
    priority_classes: Sequence[JSON] | None = None
    rules: Sequence[Rule] | None = None  # Prometheus's loaded rules and the rule files given
    skipped: tuple[str, ...] = field(default=())


# (what, API path) of the one-shot lists, in the order they are read.
LISTS: tuple[tuple[str, str], ...] = (
    ("nodes", "/api/v1/nodes"),
    ("pods", "/api/v1/pods"),
    ("jobs", "/apis/batch/v1/jobs"),
    ("limitranges", "/api/v1/limitranges"),
    ("priorityclasses", "/apis/scheduling.k8s.io/v1/priorityclasses"),
)


async def gather(settings: Settings, *, rule_files: Sequence[Path] = ()) -> Inventory:
    """Start the core's sources for `settings`, wait for the first data, and gather. Raises the core's errors
    (ConfigError, ClusterError, NotReady, SourceStopped) when the cluster itself cannot be read."""
    from gpuctl.service import open_cluster

    file_rules = [rule for path in rule_files for rule in read_rule_file(path)]  # a bad file: ConfigError first
    async with open_cluster(settings, publishing=False) as cluster:
        await cluster.wait_ready(settings.ready_timeout_s, fail_fast=True)
        return await gather_live(cluster, file_rules=file_rules, rule_files_given=bool(rule_files))


async def gather_live(cluster: Cluster, *, file_rules: Sequence[Rule] = (), rule_files_given: bool = False) -> Inventory:
    """Gather around a running cluster's latest snapshot (the bot's and the TUI's): only the one-shot
    lists and Prometheus's rules are read."""
    settings, snapshot = cluster.settings, await cluster.current()
    skipped: list[str] = []
    prometheus = next((s for s in cluster.sources if getattr(s, "name", "") == "prometheus"), None)
    if prometheus is None and snapshot.metrics.source == "none":
        skipped.append("no metrics (no --prometheus): the DCGM and idle checks did not run")
    elif snapshot.metrics.last_success is None:
        skipped.append(f"no metrics arrived ({snapshot.metrics.error}): the DCGM and idle checks did not run")
    api_rules = None if prometheus is None else await _prometheus_rules(prometheus, skipped)
    if prometheus is None and not rule_files_given:
        skipped.append("no Prometheus and no --rules file: the alert-rule check did not run")
    rules = None if api_rules is None and not rule_files_given else [*(api_rules or ()), *file_rules]
    if settings.mode != "kubernetes":
        skipped.append(f"{settings.mode} mode has no Kubernetes API: only the snapshot's checks ran")
        return Inventory(snapshot=snapshot, rules=rules, skipped=tuple(skipped))
    gpu_nodes = {n.name for n in snapshot.nodes}
    gpu_pods = {p.key for p in snapshot.pods}
    job_owners = {f"{p.namespace}/{o.name}" for p in snapshot.pods for o in p.owners if o.kind == "Job"}
    # Only what a check reads is kept, page by page: a 10,000-pod cluster's pod list is not held whole.
    keep: dict[str, Callable[[JSON], bool]] = {
        "nodes": lambda n: _name(n) in gpu_nodes,
        "pods": lambda p: _key(p) in gpu_pods,
        "jobs": lambda j: _key(j) in job_owners or bool(pod_gpu_requests(_template(j))),
    }
    lists = await _read_lists(settings, skipped, keep)
    nodes, pods = lists.get("nodes"), lists.get("pods")
    return Inventory(
        snapshot=snapshot,
        context=snapshot.watch.context,
        nodes=None if nodes is None else {_name(n): n for n in nodes},
        pods=None if pods is None else {_key(p): p for p in pods},
        jobs=lists.get("jobs"),
        limit_ranges=lists.get("limitranges"),
        priority_classes=lists.get("priorityclasses"),
        rules=rules,
        skipped=tuple(skipped),
    )


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _template(job: JSON) -> JSON:
    return ((job.get("spec") or {}).get("template") or {}).get("spec") or {}


def _key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


async def _read_lists(
    settings: Settings, skipped: list[str], keep: Mapping[str, Callable[[JSON], bool]]
) -> dict[str, list[JSON]]:
    """Each of LISTS, page by page, keeping the items `keep[what]` accepts (all when it has no entry); a list
    RBAC forbids is left out with a line in `skipped`, any other refusal raises."""
    from gpuctl.playbooks.kubeapi import KubeApi, refusal
    from gpuctl.sources.kube.connect import connect

    connection = await connect(kubeconfig=settings.kubeconfig, context=settings.context, in_cluster=settings.in_cluster)
    api = KubeApi(connection)
    out: dict[str, list[JSON]] = {}
    try:
        for what, path in LISTS:
            items: list[JSON] = []
            token = ""
            while True:
                params = {"limit": PAGE, **({"continue": token} if token else {})}
                response = await api.request("GET", path, params=params)
                if response.call.status == 403:
                    skipped.append(f"not allowed to list {what}: the checks that need them did not run")
                    break
                if not response.ok:
                    raise refusal(response, what=f"list {what}")
                accept = keep.get(what)
                items += (i for i in response.body.get("items") or () if accept is None or accept(i))
                token = (response.body.get("metadata") or {}).get("continue") or ""
                if not token:
                    out[what] = items
                    break
    finally:
        await connection.close()
    return out


async def _prometheus_rules(prometheus: Any, skipped: list[str]) -> list[Rule] | None:
    """Prometheus's loaded rules (/api/v1/rules), or None with a reason in `skipped`."""
    from gpuctl.sources.prometheus import FETCH_ERRORS, describe_error

    try:
        data = await prometheus.api_get("/api/v1/rules")
    except FETCH_ERRORS as e:
        skipped.append(f"Prometheus rules not read: {describe_error(e)}")
        return None
    return parse_api_rules(data, source=prometheus.url)
