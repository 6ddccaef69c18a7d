"""`Desk`: the TUI's one way to the playbook engine, opened the first time it is needed.

    desk = Desk(settings, cluster=lambda: feed.cluster)        # nothing connects yet
    engine = await desk.engine()                               # open_engine(settings, cluster=…)

`gpuctl top` starts without the engine: the first `a` (or the runs or audit view)
opens it in a task of the app's loop, with the cluster the app is already showing
as the live picture the planners read (`open_engine(settings, cluster=cluster)`),
and keeps it open until the app leaves or the feed is reopened (another context).
Every call is awaited from a Textual worker, never on the UI's own path.

Executions are tasks of the desk, not of a screen: leaving the progress screen
never cancels a run half-way (that would leave it Interrupted).

The requester is the identity the connection authenticates as, or `act_as` (the
policy's act_as decides, as for the CLI's `--as`), through the front end "tui".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuctl.config import Settings
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.authorize import param_scopes
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.params import Arguments
from gpuctl.playbooks.policy import Scope, decide
from gpuctl.playbooks.spec import ParamValue, Playbook
from gpuctl.tui.playbooks.offers import Offer

if TYPE_CHECKING:
    from gpuctl.playbooks.engine import Engine, Submitted
    from gpuctl.service import Cluster

EngineOpener = Callable[[Settings, "Cluster | None"], AbstractAsyncContextManager["Engine"]]


def open_engine_for(settings: Settings, cluster: Cluster | None) -> AbstractAsyncContextManager[Engine]:
    """The engine `gpuctl top` uses: `open_engine(settings, cluster=cluster)` (imported on first use)."""
    from gpuctl.playbooks.service import open_engine

    return open_engine(settings, cluster=cluster)


@dataclass(frozen=True)
class Checked:
    """An offer with the engine's answer: `denied` says why the user may not run it (None: they may)."""

    offer: Offer
    denied: str | None = None

    @property
    def usable(self) -> bool:
        return self.denied is None and self.offer.unavailable is None


class Desk:
    def __init__(
        self,
        settings: Settings,
        *,
        cluster: Callable[[], Cluster | None] = lambda: None,
        opener: EngineOpener = open_engine_for,
        act_as: Identity | None = None,
    ) -> None:
        self.settings = settings
        self._cluster = cluster
        self._opener = opener
        self.act_as = act_as
        self._ready: asyncio.Future[Engine] | None = None
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.executions: dict[str, asyncio.Task[Outcome]] = {}

    # -- the engine, opened once ------------------------------------------------------------------

    async def engine(self) -> Engine:
        """The engine, opening it on the first call; a failed open raises here and is tried again next time."""
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._holder = asyncio.create_task(self._hold(self._ready, self._stop), name="gpuctl-engine")
        return await asyncio.shield(self._ready)

    async def _hold(self, ready: asyncio.Future[Engine], stop: asyncio.Event) -> None:
        try:
            async with self._opener(self.settings, self._cluster()) as engine:
                ready.set_result(engine)
                await stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError("the engine was closed"))
                return
            raise

    @property
    def is_open(self) -> bool:
        return self._ready is not None and self._ready.done() and self._ready.exception() is None

    def running(self) -> list[str]:
        """The runs this process is executing now."""
        return [run_id for run_id, task in self.executions.items() if not task.done()]

    async def aclose(self, *, wait: bool = True) -> None:
        """Close the engine once the runs this process executes have ended (they are never cut short).

        wait=False (the app quits anyway): with runs still executing the engine is left as it is; the
        process's end interrupts them, and the next engine start records them as interrupted."""
        if self.running() and not wait:
            return
        for task in list(self.executions.values()):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._stop.set()
        if self._holder is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._holder
        self._ready = self._holder = None

    # -- who asks ---------------------------------------------------------------------------------

    def requester(self, engine: Engine) -> Requester:
        """Who asks: `act_as` when given, else whom the connection authenticates as."""
        return self.requester_as(engine, self.act_as)

    def requester_as(self, engine: Engine, identity: Identity | None) -> Requester:
        """`identity` as the requester (PolicyDenied unless the policy's act_as lets the connection's own
        identity act for them, as the CLI's --as); None or the connection's own identity: itself."""
        host = socket.gethostname()
        if identity is None or identity == engine.own:
            return Requester(identity=engine.own, via="tui", detail=host)
        engine.check_acting_for(engine.own, identity)
        return Requester(identity=identity, via="tui", detail=f"--as by {engine.own.user} on {host}")

    # -- may the user run it? ---------------------------------------------------------------------

    async def check(self, offers: Sequence[Offer]) -> list[Checked]:
        """Each offer with the reason the user may not run it: gpuctl's policy for the scope the
        parameters name, then the cluster: a SelfSubjectAccessReview as the user for each write the
        playbook declares that can be asked before planning (cluster-scoped ones, and namespaced ones
        in the namespace the offer names). Which of them a run needs depends on its plan (a staged
        reclaim posts Events, an immediate one does not; a pool is a MachineDeployment or a NodePool),
        so the offer is greyed out only when the cluster refuses every one; the plan's exact writes
        are authorized when it is submitted."""
        engine = await self.engine()
        who = self.requester(engine).identity
        return list(await asyncio.gather(*(self._check(engine, who, offer) for offer in offers)))

    async def _check(self, engine: Engine, who: Identity, offer: Offer) -> Checked:
        playbook = engine.catalog.playbooks.get(offer.playbook)
        if playbook is None:
            return Checked(offer, f"{offer.playbook} is not in the playbook catalog")
        args: Arguments = {k: _parsed(playbook, k, v) for k, v in offer.params.items()}
        scopes: list[Scope | None] = [*param_scopes(playbook, args)] or [None]
        for scope in scopes:
            decision = decide(engine.policy, who, playbook.name, scope)
            if not decision.allowed:
                return Checked(offer, f"gpuctl policy: {decision.reason}")
        acting = engine.acting_client(who)
        askable = [p for p in playbook.permissions if not p.namespaced or offer.scope_namespace is not None]
        reviews = await asyncio.gather(*(
            acting.can_i(p.verb, p.resource, namespace=offer.scope_namespace if p.namespaced else None,
                         subresource=p.subresource or "", group=p.group)
            for p in askable
        ))  # fmt: skip
        if reviews and not any(r.allowed for r in reviews):
            more = f" (and {len(reviews) - 1} more it may need)" if len(reviews) > 1 else ""
            return Checked(offer, f"the cluster (SelfSubjectAccessReview): {reviews[0].explain()}{more}")
        return Checked(offer)

    # -- running ----------------------------------------------------------------------------------

    def execute(self, engine: Engine, submitted: Submitted) -> asyncio.Task[Outcome]:
        """Start executing a submitted run (once per run in this process); its task outlives any screen."""
        task = self.executions.get(submitted.run_id)
        if task is None:
            coro = engine.execute_submitted(submitted, by=self.requester(engine))
            task = self.executions[submitted.run_id] = asyncio.create_task(coro, name=f"run {submitted.run_id}")
        return task

    def execute_named(self, engine: Engine, run_id: str) -> asyncio.Task[Outcome]:
        """Start executing an approved PlaybookRun by name (the requester carrying it out from the runs view)."""
        task = self.executions.get(run_id)
        if task is None or task.done():
            task = self.executions[run_id] = asyncio.create_task(
                engine.execute(run_id, by=self.requester(engine)), name=f"run {run_id}"
            )
        return task


def _parsed(playbook: Playbook, name: str, text: str) -> ParamValue | None:
    param = playbook.parameters.get(name)
    if param is None:
        return text
    try:
        return param.parse(text)
    except ValueError:
        return text
