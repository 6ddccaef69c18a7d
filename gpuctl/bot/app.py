"""The slack-bolt `AsyncApp`: `/gpu` and the Approve / Deny buttons, acknowledged first, answered after.

Bolt checks every HTTP request's signature (X-Slack-Signature over the raw
body with the signing secret, timestamp at most 5 minutes off) before any of
this runs: a bad or stale one gets 401. Then `skip_repeats` answers a delivery
seen before (a Slack retry carries X-Slack-Retry-Num and the same
trigger_id) with a bare 200, so it never acts twice. A command is acked
within milliseconds: help and bad input are answered in the ack itself;
everything else is acked empty and answered through response_url once the
desk has the reply.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from gpuctl.bot.desk import Asker, Desk
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION
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


def build_app(desk: Desk, *, client: AsyncWebClient, signing_secret: str, metrics: BotMetrics,
              deliveries: Deliveries, verify_requests: bool = True) -> AsyncApp:  # fmt: skip
    """The Bolt app. `verify_requests` is False only in Socket Mode (no HTTP requests to sign)."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=verify_requests,
        raise_error_for_unhandled_request=False,
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
    async def gpu(ack: Any, body: dict[str, Any], respond: Any) -> None:
        text = str(body.get("text") or "")
        quick = desk.immediate(text)
        if quick is not None:
            await ack(**quick.reply.message())
            metrics.requests.inc(command=quick.verb, outcome=quick.outcome)
            return
        await ack()
        asker = Asker(user_id=str(body.get("user_id") or ""), team_id=str(body.get("team_id") or ""))
        key = f"slack:{asker.team_id}:{body.get('trigger_id') or ''}"
        done = await desk.command(asker, text, key=key)
        metrics.requests.inc(command=done.verb, outcome=done.outcome)
        await respond(**done.reply.message())

    async def review(ack: Any, body: dict[str, Any], respond: Any, approve: bool) -> None:
        await ack()
        user = body.get("user") or {}
        asker = Asker(user_id=str(user.get("id") or ""), team_id=str(user.get("team_id") or ""))
        actions = body.get("actions") or [{}]
        run_id = str(actions[0].get("value") or "")
        done = await desk.review(asker, run_id, approve=approve)
        metrics.requests.inc(command=done.verb, outcome=done.outcome)
        # A decision replaces the plan message (its buttons go); a refusal goes to the clicker alone.
        await respond(**done.reply.message(), replace_original=done.reply.replaces)
        if approve and done.outcome == "ok":
            ended = await desk.follow(run_id)
            if ended is not None:
                await respond(**ended.message(), replace_original=ended.replaces)

    @app.action(APPROVE_ACTION)
    async def approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await review(ack, body, respond, approve=True)

    @app.action(DENY_ACTION)
    async def deny(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await review(ack, body, respond, approve=False)

    return app
