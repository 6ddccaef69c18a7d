"""What a `gpuctl serve` replica says about itself, on its own port (settings.health_port, default 8081):

    GET /healthz   liveness: 200 while the process serves, with the state below
    GET /readyz    readiness: 200 when ready, else 503, with the same state
    GET /metrics   gpuctl_serve_leader (1 while this replica leads), gpuctl_serve_ready,
                   gpuctl_serve_runs_executing: Prometheus text format 0.0.4 (the pod names the replica)

    {"replica": "gpuctl-5d9c-x2x", "ready": true, "role": "leader" | "follower" | "off",
     "leader": "gpuctl-5d9c-x2x" | null, "lease": "gpuctl/gpuctl-leader", "cluster_reachable": true,
     "bot": "serving" | "off", "cluster_ready": true | null, "executing": ["run", ...]}

Ready means: the executor (when on) has its engine and heard from the API
server within a lease duration, and the bot (when on) is serving. A follower is ready: every
replica answers Slack. Liveness never depends on the cluster, so an API-server
outage does not get every replica restarted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from gpuctl.bot.metrics import CONTENT_TYPE

if TYPE_CHECKING:  # the bot (Slack SDKs) loads only when it is on
    from gpuctl.bot.server import RunningBot
    from gpuctl.playbooks.executor import Executor

Role = Literal["leader", "follower", "off"]


@dataclass
class ReplicaState:
    """The parts of a replica that exist (None: switched off, or not started yet)."""

    name: str
    executor: Executor | None = None
    bot: RunningBot | None = None
    bot_on: bool = True
    executor_on: bool = False

    @property
    def role(self) -> Role:
        if self.executor is None:
            return "off"
        return "leader" if self.executor.leadership.valid() else "follower"

    def report(self) -> dict[str, Any]:
        leadership = self.executor.leadership if self.executor is not None else None
        reachable = leadership.reachable(leadership.election.lease_s) if leadership is not None else None
        body: dict[str, Any] = {
            "replica": self.name,
            "role": self.role,
            "leader": leadership.leader if leadership is not None else None,
            "lease": f"{leadership.locks.namespace}/{leadership.lease_name}" if leadership is not None else None,
            "cluster_reachable": reachable,
            "bot": "serving" if self.bot is not None else "off" if not self.bot_on else "starting",
            "cluster_ready": self.bot.cluster.ready if self.bot is not None else None,
            "executing": sorted(self.executor.running) if self.executor is not None else [],
        }
        started = (self.bot is not None or not self.bot_on) and (self.executor is not None or not self.executor_on)
        body["ready"] = reachable is not False and started
        return body


def health_app(state: ReplicaState) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(state.report())

    async def readyz(request: web.Request) -> web.Response:
        body = state.report()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def metrics(request: web.Request) -> web.Response:
        body = state.report()
        gauges = (
            ("gpuctl_serve_leader", "1 while this replica leads (holds the leader Lease), else 0.", body["role"] == "leader"),
            ("gpuctl_serve_ready", "1 while /readyz answers 200, else 0.", body["ready"]),
            ("gpuctl_serve_runs_executing", "Playbook runs this replica is executing now.", len(body["executing"])),
        )
        text = "".join(f"# HELP {name} {text}\n# TYPE {name} gauge\n{name} {int(value)}\n" for name, text, value in gauges)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@contextlib.asynccontextmanager
async def serving_health(state: ReplicaState, host: str, port: int) -> AsyncIterator[str]:
    """Serve /healthz and /readyz on host:port until the block ends; yields the base URL (port 0: a free one)."""
    runner = web.AppRunner(health_app(state), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]  # the port chosen for 0
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
