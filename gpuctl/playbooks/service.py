"""open_engine(settings): the one way a front end gets a playbook engine, wired from settings.

    async with open_engine(settings) as engine:      # connects, opens the audit log, recovers
        plan = await engine.plan(requester, "adjust-quota", {"namespace": "team-a", "quota": "8"}, key=key)

It loads the playbook catalog and the policy, connects to the cluster (the
kubeconfig, or the pod's service account), asks the API server who that
connection is (a SelfSubjectReview), opens the audit log, and records runs a
crashed process left behind (`Engine.recover`). The live picture a planner
needs is started on first use and shared after that (`LiveSnapshots`).

With `--demo` settings (`settings.mode == "demo"`) the engine is the same,
but its requests go to the demo's simulated API (gpuctl.sim.api) over the
demo cluster's world, which it starts at once (or the running `cluster`
given); the policy defaults to gpuctl/sim/demo-policy.yaml and the audit log
to a temporary file (see `_demo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

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
from gpuctl.playbooks.policy import Policy, load_policy
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

    async def cluster(self) -> Cluster:
        """The live picture, started now if it is not running yet."""
        if self._cluster is None:
            self._cluster = await self._stack.enter_async_context(open_cluster(self.settings))
        return self._cluster

    async def __call__(self) -> Snapshot:
        cluster = await self.cluster()
        if not cluster.ready:
            return await cluster.wait_ready(self.settings.ready_timeout_s, fail_fast=True)
        return await cluster.current()  # joined off the loop: planning at 10,000 pods must not stop it

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
    demo = settings.mode == "demo"
    policy_file = settings.policy or (_demo_policy_file() if demo else None)
    policy = await asyncio.to_thread(load_policy, policy_file, playbooks=list(catalog.playbooks))
    async with contextlib.AsyncExitStack() as stack:
        snapshots = LiveSnapshots(settings, cluster)
        stack.push_async_callback(snapshots.aclose)
        audit_location: str | None
        if demo:
            api, audit_location = await _demo(stack, settings, snapshots, policy)
        else:
            connection = await connect(kubeconfig=settings.kubeconfig, context=settings.context, in_cluster=settings.in_cluster)
            stack.push_async_callback(connection.close)
            api, audit_location = KubeApi(connection), settings.audit
        own = await ActingClient(api, None).whoami()
        audit = await stack.enter_async_context(open_audit(audit_location))
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


def _demo_policy_file() -> Path:
    from gpuctl.sim.api.connect import DEMO_POLICY

    return DEMO_POLICY


async def _demo(
    stack: contextlib.AsyncExitStack, settings: Settings, snapshots: LiveSnapshots, policy: Policy
) -> tuple[KubeApi, str]:
    """The demo's simulated API over the demo cluster, and where its audit log goes: the `audit` setting,
    else a fresh SQLite file in a temporary directory removed on exit (the simulated cluster starts anew
    each time too, so a log of another session's runs would name objects that never existed here)."""
    from gpuctl.sim.api.connect import demo_api

    api = demo_api(await snapshots.cluster(), policy)
    location = settings.audit or str(
        Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpuctl-demo-"))) / "audit.sqlite"
    )
    return api, location
