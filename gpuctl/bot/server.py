"""`gpuctl bot serve`: the bot's HTTP server, built from settings.

    POST /slack/events   slash commands and interactivity (Bolt, signature checked)
    POST /alertmanager   Alertmanager webhooks (version 4; bearer token when alertmanager_token is set)
    GET  /healthz        200 while serving: {"ok": true, "cluster_ready": ..., "stopped_sources": [...],
                         "engine": "connected" | "not connected: why"}
    GET  /metrics        the bot's own metrics (gpuctl.bot.metrics)

`alerts_gate` (gpuctl serve): while it returns a reason, /alertmanager answers
503 with it and handles nothing (a follower replica: Alertmanager retries, and
the retry may reach the leader).

Over HTTP the listening socket is served by a process of its own
(gpuctl.bot.front_door): Slack's requests are verified and acked there, never
behind the main process's work (watches, refreshes, answers, the engine);
what each ack leaves to do (the answers) and counts comes back to the main
loop, and the other routes are relayed to it (they are `build_web_app`'s,
served on the main loop).

With `socket_mode` Slack's requests arrive over Socket Mode (app token, no
public endpoint) and are acked on the main loop; /slack/events is not served,
the other routes are, from the main loop.
`running_bot` starts everything (cluster sources, web server, socket) and
stops it on exit; tests use it directly, the CLI through `serve`. Nothing in
it waits for the API server: the cluster sources retry on their own, and the
playbook engine is opened in the background (gpuctl.bot.lazy_engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from gpuctl.bot.alert_rules import AlertRules, load_alert_rules
from gpuctl.bot.alerts import MAX_BODY, AlertDesk, Rejected, parse_payload
from gpuctl.bot.app import EVENTS_PATH, AfterAck, Deliveries, Later, Responder, acked, build_app
from gpuctl.bot.desk import Desk, LiveView
from gpuctl.bot.engine_seam import EngineSeam
from gpuctl.bot.front_door import REMOTE_HEADER, address, bind, front_door, served_here
from gpuctl.bot.identity import IdentityMap, IdentityResolver, load_identity_map
from gpuctl.bot.metrics import CONTENT_TYPE, BotMetrics
from gpuctl.config import Settings
from gpuctl.errors import ConfigError
from gpuctl.playbooks.loader import Catalog, load_catalog
from gpuctl.playbooks.policy import Policy, load_policy
from gpuctl.serve.signals import StopSignals
from gpuctl.service import Cluster, open_cluster
from gpuctl.sources.base import Source

if TYPE_CHECKING:
    from gpuctl.playbooks.engine import Engine
    from gpuctl.playbooks.registry import Registry

log = logging.getLogger(__name__)

ALERTS_PATH = "/alertmanager"
DEFAULT_SLACK_API = "https://slack.com/api/"
READY_WAIT_S = 60.0
RESPONSE_TIMEOUT_S = 30.0  # one reply on response_url (slack_sdk's webhook default)  # how long start-up waits for the first data before serving "no data yet" answers

AlertsGate = Callable[[], str | None]  # None: handle alerts here; else why not (503)


@dataclass(frozen=True)
class Files:
    """What the bot reads from files at start-up (all checked before anything starts)."""

    catalog: Catalog
    policy: Policy
    identity_map: IdentityMap
    alert_rules: AlertRules | None


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if value is None or not value.get_secret_value():
        raise ConfigError(f"the bot needs {name}", hint=f"set GPUCTL_{name.upper()} or {name} in the config file")
    return str(value.get_secret_value())


def check_settings(settings: Settings, *, socket_mode: bool) -> None:
    """ConfigError naming the missing secret: HTTP mode needs token + signing secret, Socket Mode token + app token."""
    _secret(settings, "slack_bot_token")
    _secret(settings, "slack_app_token" if socket_mode else "slack_signing_secret")


def read_files(settings: Settings) -> Files:
    """Playbooks, policy, identity map and alert rules; ConfigError (file:line: field) for any bad one.

    Without a policy file nobody may act and nobody may view on a real cluster (the
    policy's default); `--demo` uses the demo's policy, as its engine does (everyone
    views; demo-user runs, demo-lead approves, alerts run reclaims as demo-alerts)."""
    catalog = load_catalog(settings.playbooks_dir)
    path = settings.policy
    if path is None and settings.demo:
        from gpuctl.sim.api.connect import DEMO_POLICY

        path = DEMO_POLICY
    policy = load_policy(path, playbooks=catalog.playbooks)
    rules = load_alert_rules(settings.alert_rules, catalog, policy) if settings.alert_rules else None
    return Files(catalog, policy, load_identity_map(settings.slack_identity_map), rules)


class _MeasuredSocketMode(AsyncSocketModeHandler):
    """Socket Mode with each request's Tally (its ack's latency, what is left to do) taken like HTTP mode's."""

    after: AfterAck

    async def handle(self, client: Any, req: Any) -> None:
        _, tally = await acked(super().handle(client, req), lambda: req.payload)
        self.after.take(tally)


@dataclass
class RunningBot:
    """A started bot: where it listens and its parts (tests read them)."""

    url: str
    cluster: Cluster
    desk: Desk
    seam: EngineSeam
    alerts: AlertDesk
    metrics: BotMetrics


def _engine_state(seam: EngineSeam) -> str:
    state = getattr(seam, "state", None)  # LazyEngine says how it stands; other seams are there or absent
    return state if isinstance(state, str) else "connected"


def build_web_app(alerts: AlertDesk, metrics: BotMetrics, cluster: Cluster, alertmanager_token: str | None,
                  alerts_gate: AlertsGate | None = None) -> web.Application:  # fmt: skip
    """The bot's routes other than Slack's, served on the main loop (the one that owns the alert desk and the
    cluster, so a 200 from /healthz means it turns): over HTTP relayed by the front door process on a private
    Unix socket, in Socket Mode on the bot's port itself."""

    async def alertmanager(request: web.Request) -> web.Response:
        try:
            if alertmanager_token is not None:
                given = request.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {alertmanager_token}".encode()):
                    raise Rejected(401, "missing or wrong bearer token")
            if (request.content_length or 0) > MAX_BODY:
                raise Rejected(413, f"body of {request.content_length} bytes is over the {MAX_BODY} byte limit")
            try:
                body = await request.read()  # the whole body, refused past client_max_size (= MAX_BODY)
            except web.HTTPRequestEntityTooLarge:
                raise Rejected(413, f"body is over the {MAX_BODY} byte limit") from None
            if alerts_gate is not None and (elsewhere := alerts_gate()) is not None:
                return web.json_response({"error": elsewhere}, status=503)
            payload = parse_payload(body)
        except Rejected as e:
            sender = request.remote or request.headers.get(REMOTE_HEADER)  # over the private socket: the door says
            log.warning("alertmanager webhook from %s rejected (%d): %s", sender, e.status, e.reason)
            metrics.alerts.inc(outcome="rejected")
            return web.json_response({"error": e.reason}, status=e.status)
        outcome = await alerts.handle(payload)
        for name, count in outcome.counts().items():
            metrics.alerts.inc(count, outcome=name)
        # A failed post answers 503: Alertmanager retries, and the retry posts what failed (nothing else twice).
        return web.json_response(outcome.counts(), status=503 if outcome.failed else 200)

    async def healthz(request: web.Request) -> web.Response:
        body = {"ok": True, "cluster_ready": cluster.ready, "stopped_sources": [name for name, _ in cluster.crashed],
                "engine": _engine_state(alerts.seam)}  # fmt: skip
        return web.json_response(body)

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(ALERTS_PATH, alertmanager)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


@contextlib.asynccontextmanager
async def running_bot(
    settings: Settings,
    *,
    socket_mode: bool = False,
    sources: Sequence[Source] | None = None,
    seam: EngineSeam | None = None,
    alerts_gate: AlertsGate | None = None,
    registry: Registry | None = None,
    host: str | None = None,
    work_nice: int = 0,
) -> AsyncIterator[RunningBot]:
    """Check settings and files, start the cluster sources, the web server and (socket_mode) the socket; stop on exit.

    `work_nice` > 0 (over HTTP): once the front door process serves, this process's threads are lowered to
    that nice for good (gpuctl.bot.front_door): process-wide, so only entry points pass it.

    The seam: `seam` if given, else a LazyEngine opening the playbook engine (open_engine, with
    `registry` and `host`) in the background on the bot's own connection settings (with --demo: the
    demo's simulated API over the bot's demo cluster), planning from the bot's live picture
    (`await bot.seam.connected(timeout_s)` waits for it; `gpuctl serve`'s executor shares it)."""
    check_settings(settings, socket_mode=socket_mode)
    files = await asyncio.to_thread(read_files, settings)
    metrics = BotMetrics()
    client = AsyncWebClient(token=_secret(settings, "slack_bot_token"), base_url=settings.slack_api_url or DEFAULT_SLACK_API)
    resolver = IdentityResolver(
        files.identity_map,
        users_info=client.users_info if files.identity_map.emails else None,
        usergroup_members=client.usergroups_users_list if files.identity_map.usergroups else None,
    )
    async with contextlib.AsyncExitStack() as stack:
        cluster = await stack.enter_async_context(open_cluster(settings, sources=sources))
        if seam is None:
            from gpuctl.bot.lazy_engine import LazyEngine
            from gpuctl.playbooks.service import open_engine

            def opener() -> contextlib.AbstractAsyncContextManager[Engine]:
                return open_engine(settings, catalog=files.catalog, cluster=cluster, registry=registry, host=host)

            seam = await stack.enter_async_context(LazyEngine(opener, runs=metrics.runs))
        desk = Desk(view=LiveView(cluster), resolver=resolver, policy=files.policy, seam=seam)
        signing = "" if socket_mode else _secret(settings, "slack_signing_secret")
        # Replies to response_url share one session; answers still running when the bot stops are cancelled
        # before the engine closes (the stack unwinds in reverse).
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RESPONSE_TIMEOUT_S)))
        later = Later()
        stack.push_async_callback(later.aclose)
        after = AfterAck(desk, metrics=metrics, respond=Responder(session), later=later)
        alerts = AlertDesk(files.alert_rules, files.catalog, files.policy, client, seam)
        stack.push_async_callback(alerts.aclose)  # auto runs in flight stop before the engine closes
        token = settings.alertmanager_token.get_secret_value() if settings.alertmanager_token else None
        web_app = build_web_app(alerts, metrics, cluster, token, alerts_gate)
        listener = stack.enter_context(bind(settings.bot_host, settings.bot_port))
        bound_host, port = address(listener)  # not `host`: the engine's opener names the replica by that
        # The web server stops (its requests in flight finished) before the answers are cancelled: an ack's
        # hand-over to `later` comes before later.aclose.
        if socket_mode:
            await stack.enter_async_context(served_here(web_app, listener))
        else:
            await stack.enter_async_context(front_door(web_app, listener, signing_secret=signing, take=after.take,
                                                       work_nice=work_nice))  # fmt: skip
        socket: _MeasuredSocketMode | None = None
        try:
            if socket_mode:
                bolt = build_app(signing_secret="", deliveries=Deliveries(), client=client)
                socket = _MeasuredSocketMode(bolt, _secret(settings, "slack_app_token"), web_client=client)
                socket.after = after
                await socket.connect_async()
            log.info("gpuctl bot serving on %s:%s (%s), Slack API %s", bound_host, port,
                     "socket mode" if socket_mode else f"HTTP at {EVENTS_PATH}", client.base_url)  # fmt: skip
            yield RunningBot(f"http://{bound_host}:{port}", cluster, desk, seam, alerts, metrics)
        finally:
            if socket is not None:
                await socket.close_async()


async def serve(settings: Settings, *, socket_mode: bool = False, out: TextIO, work_nice: int = 0) -> None:
    """Run the bot until SIGTERM (returns) or Ctrl-C (raises KeyboardInterrupt); one line on `out` once it serves.

    Either signal cancels the serving at once (gpuctl.serve.signals), so the bot shuts down in order
    (answers in flight are cancelled before the engine closes), also while it waits for the first data and
    when it was started with SIGINT ignored (a background job). `work_nice`: running_bot's."""
    with StopSignals():
        async with running_bot(settings, socket_mode=socket_mode, work_nice=work_nice) as bot:
            try:  # the first data, briefly; an unreachable API server is said at its first refusal, not waited out
                await bot.cluster.wait_ready(READY_WAIT_S, fail_fast=True)
            except Exception as e:  # serve anyway: answers say "no data yet" and why, /healthz shows it; sources retry
                log.warning("no cluster data yet: %s", e)
            out.write(f"gpuctl bot: serving on {bot.url}\n")
            out.flush()
            await asyncio.Event().wait()
