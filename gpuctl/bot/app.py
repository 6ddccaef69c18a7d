"""The slack-bolt `AsyncApp`: `/gpu` and the Approve / Deny buttons, acknowledged first, answered after.

Bolt checks every HTTP request's signature (X-Slack-Signature over the raw
body with the signing secret, timestamp at most 5 minutes off) before any of
this runs: a bad or stale one gets 401. Then `skip_repeats` answers a delivery
seen before (a Slack retry carries X-Slack-Retry-Num and the same
trigger_id) with a bare 200, so it never acts twice. A command is acked
within milliseconds: help and bad input are answered in the ack itself;
everything else is acked empty and answered through response_url once the
desk has the reply.

The ack is the HTTP answer itself: the listener acks and hands the rest to a
task of its own (`Later`), and Bolt runs in process_before_response mode,
so it answers as soon as the listener returns (otherwise Bolt runs the
listener as a task and polls every 10 ms for its ack: 50 requests at once
were 5,000 wake-ups a second of the loop that acks). Over HTTP the app
runs on the front door's loop (gpuctl.bot.front_door), so the skip_repeats
state (`Deliveries`) lives there; the answers run on the main loop (`Later`).
In Socket Mode both are the main loop. Replies go to
response_url through one shared HTTP session (`Responder`: keep-alive; Bolt's
`respond` opened a session, a connection and a DNS look-up per reply).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from gpuctl.bot.desk import Asker, Desk
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION
from gpuctl.bot.front_door import MainLoop
from gpuctl.bot.metrics import BotMetrics

log = logging.getLogger(__name__)

COMMAND = "/gpu"
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


class Later:
    """The work after an ack, each request's as a task of its own on the loop that made this Later (the main
    loop): held here until it ends (the loop keeps only weak references to tasks); a failure is logged.
    `start` may be called from any thread (the front door acks on a loop of its own). `aclose` cancels what
    is still running; work started after it is dropped."""

    def __init__(self) -> None:
        self._main = MainLoop(asyncio.get_running_loop())
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """`work` as a task of its own on this Later's loop: now when called there, else at its next turn."""
        if _running_loop() is self._main.loop:
            self._create(work, what)
            return
        try:
            self._main.call_soon(functools.partial(self._create, work, what))
        except RuntimeError:  # the loop is closed: the bot has stopped
            work.close()

    def _create(self, work: Coroutine[Any, Any, None], what: str) -> None:
        if self._closed:
            work.close()
            return
        task = self._main.loop.create_task(work, name=what)
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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a thread without a loop
        return None


class Responder:
    """Posts replies to Slack's response_url over one shared session (keep-alive), as Bolt's `respond` would."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, response_url: str, message: Mapping[str, Any], *, replace_original: bool | None = None) -> None:
        hook = AsyncWebhookClient(url=response_url, session=self.session)
        sent = await hook.send(**message, replace_original=replace_original)
        if sent.status_code != 200:
            log.warning("Slack refused a reply on response_url (%s): %s", sent.status_code, sent.body[:200])


def build_app(desk: Desk, *, client: AsyncWebClient, signing_secret: str, metrics: BotMetrics, deliveries: Deliveries,
              respond: Responder, later: Later, verify_requests: bool = True) -> AsyncApp:  # fmt: skip
    """The Bolt app. `verify_requests` is False only in Socket Mode (no HTTP requests to sign). Answers are
    `later`'s tasks and go out through `respond`."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=verify_requests,
        raise_error_for_unhandled_request=False,
        process_before_response=True,  # the listeners only ack: see the module doc
        logger=logging.getLogger("gpuctl.bot.bolt"),
    )

    @app.middleware
    async def skip_repeats(req: Any, resp: Any, next: Callable[[], Awaitable[Any]]) -> Any:  # Bolt passes it as `next`
        key = delivery_key(req.body)
        if key is not None and not deliveries.first(key):
            retry = req.headers.get("x-slack-retry-num", ["-"])[0]
            log.info("Slack delivery %s seen before (retry %s): answered without acting", key, retry)
            metrics.duplicates.inc()
            return BoltResponse(status=200, body="")
        return await next()

    @app.command(COMMAND)
    async def gpu(ack: Any, body: dict[str, Any]) -> None:
        text = str(body.get("text") or "")
        quick = desk.immediate(text)
        if quick is not None:
            await ack(**quick.reply.message())
            metrics.requests.inc(command=quick.verb, outcome=quick.outcome)
            return
        await ack()
        later.start(answer(body, text), "/gpu")

    async def answer(body: dict[str, Any], text: str) -> None:
        asker = Asker(user_id=str(body.get("user_id") or ""), team_id=str(body.get("team_id") or ""))
        key = f"slack:{asker.team_id}:{body.get('trigger_id') or ''}"
        done = await desk.command(asker, text, key=key)
        metrics.requests.inc(command=done.verb, outcome=done.outcome)
        await respond(str(body["response_url"]), done.reply.message())

    async def review(ack: Any, body: dict[str, Any], approve: bool) -> None:
        await ack()
        later.start(decide(body, approve), "approve" if approve else "deny")

    async def decide(body: dict[str, Any], approve: bool) -> None:
        user = body.get("user") or {}
        asker = Asker(user_id=str(user.get("id") or ""), team_id=str(user.get("team_id") or ""))
        actions = body.get("actions") or [{}]
        run_id = str(actions[0].get("value") or "")
        url = str(body["response_url"])
        done = await desk.review(asker, run_id, approve=approve)
        metrics.requests.inc(command=done.verb, outcome=done.outcome)
        # A decision replaces the plan message (its buttons go); a refusal goes to the clicker alone.
        await respond(url, done.reply.message(), replace_original=done.reply.replaces)
        if approve and done.outcome == "ok":
            ended = await desk.follow(run_id)
            if ended is not None:
                await respond(url, ended.message(), replace_original=ended.replaces)

    @app.action(APPROVE_ACTION)
    async def approve(ack: Any, body: dict[str, Any]) -> None:
        await review(ack, body, approve=True)

    @app.action(DENY_ACTION)
    async def deny(ack: Any, body: dict[str, Any]) -> None:
        await review(ack, body, approve=False)

    return app
