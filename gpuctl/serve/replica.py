"""One `gpuctl serve` replica: the bot (bot/server.py `running_bot`), the executor (playbooks/executor.py)
and the health server (health.py), started together and stopped together.

The bot and the executor share one playbook engine (the bot's, opened in the
background: one API connection, one audit connection, one live picture); the
executor starts once it is connected. Every replica answers Slack (the bot) and the probes. Only the leader (the Lease
`gpuctl-leader` in gpuctl's namespace, playbooks/leader.py) executes runs and
handles Alertmanager webhooks: a follower answers /alertmanager with 503, so
Alertmanager retries and the retry may reach the leader. With the executor off
no election takes place and the bot handles alerts itself, as `gpuctl bot
serve` does (run such a process as one replica).

SIGTERM (or Ctrl-C): no new runs; the leader keeps its Lease while the runs in
progress finish, vacates it, then the bot stops; a second signal stops at once. kill -9: the Lease expires after
leader_lease_s and another replica takes over; the run the dead leader was
executing is marked Interrupted by the new leader once its target Leases
expire (lock_lease_s), and never executed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, TextIO

from gpuctl.config import Settings
from gpuctl.serve.health import ReplicaState, serving_health
from gpuctl.serve.signals import StopSignals

if TYPE_CHECKING:
    from gpuctl.bot.server import AlertsGate
    from gpuctl.playbooks.registry import Registry

log = logging.getLogger(__name__)


def replica_name(settings: Settings) -> str:
    """The replica's name: settings.replica_name (GPUCTL_REPLICA_NAME), else the host name (in a pod: its name)."""
    return settings.replica_name or socket.gethostname()


async def serve(
    settings: Settings,
    *,
    bot: bool = True,
    executor: bool = True,
    socket_mode: bool = False,
    out: TextIO,
    registry: Registry | None = None,
    work_nice: int = 0,
) -> None:
    """Run a replica until SIGTERM or SIGINT (then wind down; a second one stops at once: see StopSignals) or
    cancellation; one line on `out` once it serves.

    `registry` replaces the playbooks' logic (tests); `work_nice` is the bot's (gpuctl.bot.server.running_bot)."""
    from gpuctl.bot.lazy_engine import LazyEngine
    from gpuctl.bot.server import running_bot
    from gpuctl.playbooks.executor import Executor
    from gpuctl.playbooks.leader import Election
    from gpuctl.playbooks.service import open_engine

    state = ReplicaState(name := replica_name(settings), bot_on=bot, executor_on=executor)
    election = Election.of(settings)  # checked before anything starts
    stopping = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        health = await stack.enter_async_context(serving_health(state, settings.bot_host, settings.health_port))
        stack.enter_context(StopSignals(stopping.set))  # the first winds down, a second stops at once
        if bot:
            gate = _follower_gate(state) if executor else None
            state.bot = await stack.enter_async_context(running_bot(settings, socket_mode=socket_mode, alerts_gate=gate,
                                                                    registry=registry, host=name, work_nice=work_nice))  # fmt: skip
        if executor:
            if state.bot is not None and isinstance(state.bot.seam, LazyEngine):
                # One engine for the replica: the bot's (one API connection, one audit connection, one
                # live picture), waited for while it connects in the background (the bot serves meanwhile).
                engine = await state.bot.seam.engine()
            else:
                engine = await stack.enter_async_context(open_engine(settings, host=name, registry=registry))
            state.executor = Executor(engine, name=name, election=election)
        parts = [f"bot on {state.bot.url}" if state.bot else "", "executor" if executor else ""]
        out.write(f"gpuctl serve: {name} serving ({', '.join(p for p in parts if p)}); health on {health}\n")
        out.flush()
        if state.executor is None:
            await stopping.wait()
            return
        executing = asyncio.create_task(state.executor.run(), name="executor")
        stop = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({executing, stop}, return_when=asyncio.FIRST_COMPLETED)
            state.executor.stop()
            await executing  # its error, if it ended on one
        finally:
            for task in (executing, stop):
                task.cancel()
            await asyncio.gather(executing, stop, return_exceptions=True)


def _follower_gate(state: ReplicaState) -> AlertsGate:
    """Alerts are the leader's: a follower (or a replica between terms) sends Alertmanager elsewhere."""

    def gate() -> str | None:
        if state.role == "leader":
            return None
        leader = state.executor.leadership.leader if state.executor is not None else None
        now = f"{leader} leads" if leader else "no replica leads yet"
        return f"{state.name} is not the leader ({now}): alerts are handled by the leader; retry"

    return gate
