"""KubernetesSource: nodes, GPU pods, GPU quotas, namespaces, and what links pods to their
top controllers and disruption budgets (ReplicaSets, Jobs, PodDisruptionBudgets), live.

One reflector (gpuctl.sources.kube.reflector) per resource runs side by side,
each list-then-watch with its own reconnects. This class owns the connection,
builds the reflectors and folds their states into one WatchHealth: connected
when every reflector is (or, for an optional resource, is forbidden by RBAC:
that resource is then listed as unreadable, not as an error), with the first
error a person should see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import ClusterError, Unauthorized
from gpuctl.model import WatchHealth
from gpuctl.sources.base import Backoff
from gpuctl.sources.kube import wire
from gpuctl.sources.kube.connect import KubeConnection, connect, describe
from gpuctl.sources.kube.reflector import PAGE_SIZE, Reflector, Resource
from gpuctl.sources.kube.trim import (
    trim_job,
    trim_namespace,
    trim_node,
    trim_pdb,
    trim_pod,
    trim_quota,
    trim_replicaset,
)
from gpuctl.state.pools import pool_labels
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore


class KubernetesSource:
    name = "kubernetes"

    def __init__(
        self,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        pool_label: str | None = None,
        backoff: Callable[[], Backoff] = Backoff,
        relist_backoff: Callable[[], Backoff] | None = None,
        page_size: int = PAGE_SIZE,
        watch_timeout_s: tuple[int, int] = (240, 360),
        clock: Clock = utcnow,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._in_cluster = in_cluster
        self._keep_labels = frozenset(pool_labels(pool_label))
        self._backoff = backoff
        self._relist_backoff = relist_backoff
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._clock = clock
        self.connection: KubeConnection | None = None
        self.reflectors: list[Reflector] = []
        self.ever_connected = False

    async def connect(self) -> KubeConnection:
        """Load credentials (raises ConfigError); idempotent. Does not contact the server."""
        if self.connection is None:
            self.connection = await connect(kubeconfig=self._kubeconfig, context=self._context, in_cluster=self._in_cluster)
        return self.connection

    @property
    def failure(self) -> ClusterError | None:
        """The first current error that holds the picture back (a forbidden optional kind does not)."""
        for r in self.reflectors:
            if r.error is not None and (r.resource.required or r.resource.kind not in r.store.listed):
                return r.error
        return None

    @property
    def listed(self) -> bool:
        """Every resource has been listed at least once."""
        return bool(self.reflectors) and all(r.lists > 0 or r.resource.kind in r.store.listed for r in self.reflectors)

    def _resources(self, conn: KubeConnection) -> list[Resource]:
        core = conn.lister
        return [
            Resource(Kind.NODE, "nodes", core("/api/v1/nodes"), partial(trim_node, keep_labels=self._keep_labels), wire.Node),
            Resource(Kind.POD, "pods", core("/api/v1/pods"), trim_pod, wire.Pod),
            Resource(Kind.QUOTA, "resourcequotas", core("/api/v1/resourcequotas"), trim_quota, wire.ResourceQuota, required=False),
            Resource(Kind.NAMESPACE, "namespaces", core("/api/v1/namespaces"), trim_namespace, wire.Namespace, required=False),
            # What owner chains and disruption budgets come from; without them pods show less, not nothing.
            Resource(Kind.REPLICASET, "replicasets", core("/apis/apps/v1/replicasets"), trim_replicaset, wire.Controller,
                     required=False),
            Resource(Kind.JOB, "jobs", core("/apis/batch/v1/jobs"), trim_job, wire.Controller, required=False),
            Resource(Kind.PDB, "poddisruptionbudgets", core("/apis/policy/v1/poddisruptionbudgets"), trim_pdb,
                     wire.PodDisruptionBudget, required=False),
        ]

    async def run(self, store: ClusterStore) -> None:
        conn = await self.connect()
        resources = self._resources(conn)

        def describe_error(error: BaseException, resource: str) -> ClusterError:
            return describe(error, server=conn.server, context=conn.context, resource=resource)

        def report(_: Reflector | None = None) -> None:
            health = fold_health(self.reflectors, context=conn.context)
            self.ever_connected |= health.connected
            store.set_unreadable(r.resource.kind for r in self.reflectors if forbidden(r))
            store.set_watch_health(health)

        self.reflectors = [
            Reflector(
                resource,
                store,
                describe=describe_error,
                on_health=report,
                backoff=self._backoff(),
                relist_backoff=self._relist_backoff() if self._relist_backoff else None,
                page_size=self._page_size,
                watch_timeout_s=self._watch_timeout_s,
                clock=self._clock,
            )
            for resource in resources
        ]
        report()
        try:
            async with asyncio.TaskGroup() as group:
                for reflector in self.reflectors:
                    group.create_task(reflector.run(), name=f"watch-{reflector.resource.plural}")
        finally:
            await conn.close()
            self.connection = None


def forbidden(reflector: Reflector) -> bool:
    """An optional resource RBAC does not let us list: its part of the picture is missing, by design."""
    error = reflector.error
    return not reflector.resource.required and isinstance(error, Unauthorized) and error.status == 403


def fold_health(reflectors: Sequence[Reflector], *, context: str | None) -> WatchHealth:
    """One WatchHealth for all reflectors: connected when all are (a forbidden optional one
    counts as unreadable instead); the first error (a watcher that crashed first of all:
    nothing retries it); the soonest retry among those backing off (that is when the
    picture can next improve); every object left out."""
    unreadable = [r for r in reflectors if forbidden(r)]
    others = [r for r in reflectors if r not in unreadable]
    crashed = next((r for r in reflectors if r.crashed is not None), None)
    error = next((r.error for r in others if r.error is not None), None)
    retries: list[datetime] = [r.retry_at for r in others if r.retry_at is not None and not r.connected]
    if crashed is not None:
        message: str | None = f"the {crashed.resource.plural} watcher stopped: {crashed.crashed}"
    else:
        message = str(error) if error is not None else None
    return WatchHealth(
        source="kubernetes",
        connected=crashed is None and all(r.connected for r in others),
        context=context,
        relists=sum(r.relists for r in reflectors),
        error=message,
        retry_at=min(retries) if retries and crashed is None else None,
        unreadable=tuple(sorted(r.resource.plural for r in unreadable)),
        objects_skipped=sum(len(r.skipped) for r in reflectors),
    )
