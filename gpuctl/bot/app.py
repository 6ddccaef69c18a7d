"""The slack-bolt `AsyncApp`: `/gpu` and the Approve / Deny buttons, acknowledged first, answered after.

Bolt checks every HTTP request's signature (X-Slack-Signature over the raw
body with the signing secret, timestamp at most 5 minutes off) before any of
this runs: a bad or stale one gets 401. Then `skip_repeats` answers a delivery
seen before (a Slack retry carries X-Slack-Retry-Num and the same
trigger_id) with a bare 200, so it never acts twice. A command is acked
within milliseconds: help and bad input are answered in the ack itself;
everything else is acked empty and answered through response_url once the
desk has the reply.

The ack is the HTTP answer itself: the listeners only ack and note what is left
to do in the request's `Tally` (its work, the requests answered in the ack, the
repeats skipped); Bolt runs in process_before_response mode, so it answers as
soon as the listener returns (otherwise Bolt runs the listener as a task and
polls every 10 ms for its ack). Over HTTP the app runs in the bot's front door
process (gpuctl.bot.door_process), so the skip_repeats state (`Deliveries`)
lives there, and each request's Tally is sent to the main process; in Socket
Mode the app runs on the main loop. Either way `AfterAck` takes the Tally
where the desk and the metrics live: it counts it and runs the work as tasks
of their own (`Later`). Replies go to response_url through one shared HTTP
session (`Responder`: keep-alive; Bolt's `respond` opened a session, a
connection and a DNS look-up per reply).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

import aiohttp
from pydantic import BaseModel, Field
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from gpuctl.bot.desk import Asker, Desk
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION
from gpuctl.bot.metrics import BotMetrics
from gpuctl.bot.quick import immediate

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND = "/gpu"
EVENTS_PATH = "/slack/events"  # where Slack posts commands and clicks (HTTP mode)
DELIVERY_TTL_S = 3600.0  # Slack retries within minutes; a trigger_id is never reused
MAX_DELIVERIES = 50_000


class Deliveries:
    """Delivery keys seen lately (trigger_id or event_id), to act on each Slack request once."""

    def __init__(self, *, ttl_s: float = DELIVERY_TTL_S, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.now = now
        self.seen: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str) -> bool:
        """True the first time `key` is offered (within the TTL), False for every repeat."""
        now = self.now()
        while self.seen and (len(self.seen) > MAX_DELIVERIES or now - next(iter(self.seen.values())) > self.ttl_s):
            self.seen.popitem(last=False)
        if key in self.seen:
            return False
        self.seen[key] = now
        return True


def delivery_key(body: Mapping[str, Any]) -> str | None:
    """What identifies one user action across Slack's retries: its trigger_id (commands, clicks) or event_id."""
    for name in ("trigger_id", "event_id"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return f"{name}:{value}"
    return None


Kind = Literal["/gpu", "approve", "deny"]


class Work(BaseModel):
    """What an ack leaves to do: the answer to a command, or an Approve/Deny decision (Slack's body as parsed)."""

    what: Kind
    body: dict[str, Any]


class Tally(BaseModel):
    """One Slack request as its ack saw it: what to count and what to do after it, where the desk and the
    metrics live (sent from the front door process as one JSON line)."""

    ack: tuple[str, float] | None = None  # kind (command, action, other), seconds to the HTTP answer
    requests: list[tuple[str, str]] = Field(default_factory=list)  # answered in the ack: (verb, outcome)
    duplicates: int = 0
    work: list[Work] = Field(default_factory=list)


TALLY: ContextVar[Tally] = ContextVar("gpuctl_bot_tally")  # the request being acked (Bolt runs its listeners in its task)


def request_kind(body: Any) -> str:
    if isinstance(body, dict) and "command" in body:
        return "command"
    if isinstance(body, dict) and body.get("type") == "block_actions":
        return "action"
    return "other"


async def acked(dispatch: Awaitable[T], body: Callable[[], Any]) -> tuple[T, Tally]:
    """Bolt's answer to one request (`dispatch`) and its Tally, with the time the ack took (`body()`: the parsed body)."""
    start = time.perf_counter()
    tally = Tally()
    token = TALLY.set(tally)
    try:
        response = await dispatch
    finally:
        TALLY.reset(token)
    tally.ack = (request_kind(body()), time.perf_counter() - start)
    return response, tally


class Later:
    """The work after an ack, each request's as a task of its own on the loop that made this Later (the main
    loop): held here until it ends (the loop keeps only weak references to tasks); a failure is logged.
    `aclose` cancels what is still running; work started after it is dropped."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """`work` as a task of its own on this Later's loop (call it there)."""
        if self._closed:
            work.close()
            return
        task = self._loop.create_task(work, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s failed after its ack", task.get_name(), exc_info=error)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Responder:
    """Posts replies to Slack's response_url over one shared session (keep-alive), as Bolt's `respond` would."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, response_url: str, message: Mapping[str, Any], *, replace_original: bool | None = None) -> None:
        hook = AsyncWebhookClient(url=response_url, session=self.session)
        sent = await hook.send(**message, replace_original=replace_original)
        if sent.status_code != 200:
            log.warning("Slack refused a reply on response_url (%s): %s", sent.status_code, sent.body[:200])


async def _any_workspace(**_: Any) -> AuthorizeResult:
    """The front door's acks call no Slack API: no token to look up (the main process holds it)."""
    return AuthorizeResult(enterprise_id=None, team_id=None)


class SkipRepeats(AsyncMiddleware):
    """Answers a delivery seen before with a bare 200 and acts no further (a middleware object: Bolt calls it
    directly, where a function's arguments are looked up by name on each request)."""

    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse,
                            next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse | None:  # fmt: skip
        key = delivery_key(req.body)
        if key is not None and not self.deliveries.first(key):
            retry = req.headers.get("x-slack-retry-num", ["-"])[0]
            log.info("Slack delivery %s seen before (retry %s): answered without acting", key, retry)
            TALLY.get().duplicates += 1
            return BoltResponse(status=200, body="")
        return await next()


def build_app(*, signing_secret: str, deliveries: Deliveries, client: AsyncWebClient | None = None) -> AsyncApp:
    """The Bolt app that acks: request verification when `signing_secret` is set (HTTP; Socket Mode has nothing
    to sign), the retry dedupe, the listeners. It calls the Slack API only through `client` (Socket Mode);
    without one (the front door process) it needs no token. What is left after each ack is in its `Tally`."""
    app = AsyncApp(
        client=client,
        authorize=None if client is not None else _any_workspace,
        signing_secret=signing_secret or None,
        request_verification_enabled=bool(signing_secret),
        raise_error_for_unhandled_request=False,
        process_before_response=True,  # the listeners only ack: see the module doc
        logger=logging.getLogger("gpuctl.bot.bolt"),
    )

    app.use(SkipRepeats(deliveries))

    @app.command(COMMAND)
    async def gpu(ack: Any, body: dict[str, Any]) -> None:
        quick = immediate(str(body.get("text") or ""))
        if quick is not None:
            await ack(**quick.reply.message())
            TALLY.get().requests.append((quick.verb, quick.outcome))
            return
        await ack()
        TALLY.get().work.append(Work(what="/gpu", body=body))

    @app.action(APPROVE_ACTION)
    async def approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        TALLY.get().work.append(Work(what="approve", body=body))

    @app.action(DENY_ACTION)
    async def deny(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        TALLY.get().work.append(Work(what="deny", body=body))

    return app


class AfterAck:
    """Takes each request's Tally on the main loop: counts it in the bot's metrics and runs its work (the
    answers through response_url, the decisions and their follow-ups) as `later`'s tasks, each delivery's
    once: the acks skip repeats already, but a front door process that died between handing work over and
    acking it leaves Slack's retry to a new one that has not seen it."""

    def __init__(self, desk: Desk, *, metrics: BotMetrics, respond: Responder, later: Later) -> None:
        self.desk = desk
        self.metrics = metrics
        self.respond = respond
        self.later = later
        self.taken = Deliveries()

    def take(self, tally: Tally) -> None:
        if tally.ack is not None:
            self.metrics.ack_seconds.observe(tally.ack[1], kind=tally.ack[0])
        for verb, outcome in tally.requests:
            self.metrics.requests.inc(command=verb, outcome=outcome)
        if tally.duplicates:
            self.metrics.duplicates.inc(tally.duplicates)
        for work in tally.work:
            key = delivery_key(work.body)
            if key is not None and not self.taken.first(key):
                log.info("Slack delivery %s taken before: not acted on again", key)
                self.metrics.duplicates.inc()
                continue
            if work.what == "/gpu":
                self.later.start(self.answer(work.body), "/gpu")
            else:
                self.later.start(self.decide(work.body, approve=work.what == "approve"), work.what)

    async def answer(self, body: dict[str, Any]) -> None:
        asker = Asker(user_id=str(body.get("user_id") or ""), team_id=str(body.get("team_id") or ""))
        key = f"slack:{asker.team_id}:{body.get('trigger_id') or ''}"
        done = await self.desk.command(asker, str(body.get("text") or ""), key=key)
        self.metrics.requests.inc(command=done.verb, outcome=done.outcome)
        await self.respond(str(body["response_url"]), done.reply.message())

    async def decide(self, body: dict[str, Any], *, approve: bool) -> None:
        user = body.get("user") or {}
        asker = Asker(user_id=str(user.get("id") or ""), team_id=str(user.get("team_id") or ""))
        actions = body.get("actions") or [{}]
        run_id = str(actions[0].get("value") or "")
        url = str(body["response_url"])
        done = await self.desk.review(asker, run_id, approve=approve)
        self.metrics.requests.inc(command=done.verb, outcome=done.outcome)
        # A decision replaces the plan message (its buttons go); a refusal goes to the clicker alone.
        await self.respond(url, done.reply.message(), replace_original=done.reply.replaces)
        if approve and done.outcome == "ok":
            ended = await self.desk.follow(run_id)
            if ended is not None:
                await self.respond(url, ended.message(), replace_original=ended.replaces)
