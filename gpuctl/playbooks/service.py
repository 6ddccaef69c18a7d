"""open_engine(settings): the one way a front end gets a playbook engine, wired from settings.

    async with open_engine(settings) as engine:      # connects, opens the audit log, recovers
        plan = await engine.plan(requester, "adjust-quota", {"namespace": "team-a", "quota": "8"}, key=key)

It loads the playbook catalog and the policy, connects to the cluster (the
kubeconfig, or the pod's service account), asks the API server who that
connection is (a SelfSubjectReview), opens the audit log, and records runs a
crashed process left behind (`Engine.recover`). The live picture a planner
needs is started on first use and shared after that (`LiveSnapshots`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gpuctl.audit.backend import open_audit
from gpuctl.clock import Clock, utcnow
from gpuctl.config import Settings
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.execution import Runner
from gpuctl.playbooks.killswitch import KillSwitch
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.loader import Catalog, load_catalog
from gpuctl.playbooks.policy import load_policy
from gpuctl.playbooks.registry import Registry
from gpuctl.service import Cluster, open_cluster
from gpuctl.sources.kube.connect import connect


class LiveSnapshots:
    """The cluster's live picture, started on the first call (planning needs it; many commands never do),
    or a running `cluster` the caller shares (the bot's), which it keeps running and stops itself."""

    def __init__(self, settings: Settings, cluster: Cluster | None = None) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._cluster = cluster

    async def __call__(self) -> Snapshot:
        if self._cluster is None:
            self._cluster = await self._stack.enter_async_context(open_cluster(self.settings))
        if not self._cluster.ready:
            return await self._cluster.wait_ready(self.settings.ready_timeout_s, fail_fast=True)
        return self._cluster.snapshot()

    async def aclose(self) -> None:
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def open_engine(
    settings: Settings,
    *,
    registry: Registry | None = None,
    catalog: Catalog | None = None,
    host: str | None = None,
    lock_wait_s: float = 10.0,
    clock: Clock = utcnow,
    cluster: Cluster | None = None,
) -> AsyncIterator[Engine]:
    """An Engine for `settings`; `registry` and `catalog` replace the built-in ones (tests, sites).

    `host` names this process in Leases and the audit log (default: the host name); a run whose
    target another run holds waits up to `lock_wait_s` for it; `clock` is the wall clock (tests);
    `cluster`: a running live picture to plan from instead of starting one (the bot shares its own)."""
    if catalog is None:
        catalog = await asyncio.to_thread(load_catalog, settings.playbooks_dir)
    policy = await asyncio.to_thread(load_policy, settings.policy, playbooks=list(catalog.playbooks))
    connection = await connect(kubeconfig=settings.kubeconfig, context=settings.context, in_cluster=settings.in_cluster)
    snapshots = LiveSnapshots(settings, cluster)
    try:
        api = KubeApi(connection)
        own = await ActingClient(api, None).whoami()
        async with open_audit(settings.audit) as audit:
            switch = KillSwitch(api, settings.gpuctl_namespace, disabled_here=settings.playbooks_disabled)
            runner = Runner(api, audit, namespace=settings.gpuctl_namespace, check_switch=switch.check,
                            snapshots=snapshots, host=host, lock_wait_s=lock_wait_s, clock=clock,
                            lock_duration_s=settings.lock_lease_s)  # fmt: skip
            engine = Engine(
                api=api, own=own, catalog=catalog, policy=policy, registry=registry or Registry(), audit=audit,
                namespace=settings.gpuctl_namespace, snapshots=snapshots, runner=runner, clock=clock,
            )  # fmt: skip
            await engine.recover()
            yield engine
    finally:
        await snapshots.aclose()
        await connection.close()
