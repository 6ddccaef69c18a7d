"""Slack for the test bed: a local stand-in for the Web API, and a client that sends Slack's signed requests.

Slack itself is out of reach, so this is the test bed's one fake, built the way
slack-bolt's own tests build theirs: a small aiohttp server that answers the
Web API methods the bot calls with `{"ok": true, ...}` and records every call,
plus the sink for response_url posts. Everything toward the bot is real: the
bot's own AsyncWebClient talks HTTP to this server (GPUCTL_SLACK_API_URL), and
`SlackSender` sends real HTTP requests signed with real HMAC signatures, as
Slack does.

    async with FakeSlack(users={"U1": "alice@example.com"}) as slack:
        sender = SlackSender(bot_url, signing_secret="s3cret", slack=slack)
        sent = await sender.command("status", user_id="U1")
        reply = await slack.wait_for_response(sent.response_id)

Socket Mode too: apps.connections.open (with the app token) hands out
`ws://…/socket`; `send_envelope` pushes an envelope to the connected bot and
`envelope_acks` shows what it acknowledged.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from testbed.http import LoopbackServer
from testbed.waiting import poll

BOT_TOKEN = "xoxb-gpuctl-test"
APP_TOKEN = "xapp-gpuctl-test"
TEAM_ID = "T0TESTBED"


@dataclass
class Call:
    """One request the bot made: a Web API method or a response_url post."""

    method: str  # "chat.postMessage", ... or "response:<id>"
    args: dict[str, Any]
    token: str | None
    answer: dict[str, Any] = field(default_factory=dict)  # what this stand-in answered
    at: float = field(default_factory=time.time)  # when it arrived (wall clock)


class FakeSlack(LoopbackServer):
    """The Web API at `{url}api/` and response_url sinks at `{url}response/<id>`, recording every call."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        usergroups: Mapping[str, list[str]] | None = None,
        token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
    ) -> None:
        super().__init__()
        self.app_token = app_token
        self.sockets: list[web.WebSocketResponse] = []
        self.users = dict(users or {})  # user id -> email
        self.usergroups = {k: list(v) for k, v in (usergroups or {}).items()}  # group id -> member ids
        self.token = token
        self.calls: list[Call] = []
        self.fail: dict[str, str] = {}  # method -> the error it answers (until removed)
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"http://{self.target}/api/"

    def response_url(self) -> tuple[str, str]:
        """A fresh response_url and its id."""
        rid = f"r{next(self._ids)}"
        return f"http://{self.target}/response/{rid}", rid

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{rid}", self._response)
        app.router.add_get("/socket", self._socket)

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args |= await request.json()
            else:
                args |= dict(await request.post())
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token != (self.app_token if method == "apps.connections.open" else self.token):
            answer = {"ok": False, "error": "invalid_auth"}
        elif method in self.fail:
            answer = {"ok": False, "error": self.fail[method]}
        else:
            answer = self._answer(method, args)
        self.calls.append(Call(method, args, token, answer))
        return web.json_response(answer)

    def _answer(self, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        match method:
            case "apps.connections.open":
                return {"ok": True, "url": f"ws://{self.target}/socket"}
            case "auth.test":
                return {"ok": True, "url": "https://testbed.slack.invalid/", "team": "testbed", "user": "gpuctl",
                        "team_id": TEAM_ID, "user_id": "UBOT0001", "bot_id": "BBOT0001"}  # fmt: skip
            case "chat.postMessage":
                ts = f"1700000000.{next(self._ts):06d}"
                return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": {"ts": ts}}
            case "chat.update":
                return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
            case "users.info":
                user = str(args.get("user"))
                if user not in self.users:
                    return {"ok": False, "error": "user_not_found"}
                return {"ok": True, "user": {"id": user, "profile": {"email": self.users[user]}}}
            case "usergroups.users.list":
                group = str(args.get("usergroup"))
                if group not in self.usergroups:
                    return {"ok": False, "error": "no_such_subteam"}
                return {"ok": True, "users": self.usergroups[group]}
        return {"ok": False, "error": "unknown_method"}

    async def _response(self, request: web.Request) -> web.Response:
        self.calls.append(Call(f"response:{request.match_info['rid']}", await request.json(), None))
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.calls.append(Call("socket:ack", json.loads(message.data), None))
        return ws

    async def send_envelope(self, kind: str, payload: Mapping[str, Any], *, retry_attempt: int | None = None) -> str:
        """Push an envelope (`slash_commands`, `interactive`) to the bot's socket; returns its envelope_id."""
        sockets = await poll(lambda: [ws for ws in self.sockets if not ws.closed], what="the bot's Socket Mode connection")
        envelope_id = f"env-{next(self._ids)}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": dict(payload), "accepts_response_payload": True,
                    "retry_attempt": retry_attempt or 0, "retry_reason": "timeout" if retry_attempt else ""}  # fmt: skip
        await sockets[-1].send_json(envelope)
        return envelope_id

    def envelope_acks(self, envelope_id: str) -> list[dict[str, Any]]:
        return [c.args for c in self.called("socket:ack") if c.args.get("envelope_id") == envelope_id]

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def responses(self, rid: str) -> list[dict[str, Any]]:
        return [c.args for c in self.called(f"response:{rid}")]

    async def wait_for_response(self, rid: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """The first message the bot posted to response_url `rid`."""
        found = await poll(lambda: self.responses(rid), timeout_s=timeout_s, what=f"a reply on response_url {rid}")
        return found[0]

    async def wait_for_calls(self, method: str, count: int = 1, *, timeout_s: float = 60.0) -> list[Call]:
        return await poll(lambda: self.called(method), lambda c: len(c) >= count, timeout_s=timeout_s, what=f"{count} {method}")


@dataclass
class Sent:
    """What a signed request got back at once (the ack) and where its later reply goes."""

    status: int
    body: str
    response_id: str
    trigger_id: str

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body)) if self.body else {}


@dataclass
class SlackSender:
    """Sends what Slack sends: form-encoded slash commands and block_actions payloads, signed with the signing secret."""

    bot_url: str
    signing_secret: str
    slack: FakeSlack
    team_id: str = TEAM_ID
    _triggers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def sign(self, body: str, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret or self.signing_secret).generate_signature(timestamp=ts, body=body)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def command_body(self, text: str, *, user_id: str, trigger_id: str | None = None) -> tuple[str, str, str]:
        """(form body, response id, trigger id) for `/gpu text`."""
        response_url, rid = self.slack.response_url()
        trigger = trigger_id or f"trig.{next(self._triggers)}.{time.monotonic_ns()}"
        form = {
            "token": "deprecated", "team_id": self.team_id, "team_domain": "testbed", "channel_id": "C0TEST001",
            "channel_name": "gpu", "user_id": user_id, "user_name": "someone", "command": "/gpu", "text": text,
            "api_app_id": "A0TEST001", "response_url": response_url, "trigger_id": trigger,
        }  # fmt: skip
        return urllib.parse.urlencode(form), rid, trigger

    def action_body(self, action_id: str, value: str, *, user_id: str) -> tuple[str, str, str]:
        """(form body, response id, trigger id) for a click on a button."""
        response_url, rid = self.slack.response_url()
        trigger = f"trig.{next(self._triggers)}.{time.monotonic_ns()}"
        payload = {
            "type": "block_actions", "team": {"id": self.team_id}, "user": {"id": user_id, "team_id": self.team_id},
            "api_app_id": "A0TEST001", "trigger_id": trigger, "response_url": response_url,
            "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0TEST001"},
            "channel": {"id": "C0TEST001"}, "message": {"ts": "1700000000.000001", "text": "plan"},
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                         "action_ts": f"{time.time():.6f}"}],
        }  # fmt: skip
        return urllib.parse.urlencode({"payload": json.dumps(payload)}), rid, trigger

    async def post(self, body: str, headers: Mapping[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            all_headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
            async with session.post(f"{self.bot_url}/slack/events", data=body.encode(), headers=all_headers) as resp:
                return resp.status, await resp.text()

    async def command(self, text: str, *, user_id: str, headers: Mapping[str, str] | None = None,
                      trigger_id: str | None = None) -> Sent:  # fmt: skip
        body, rid, trigger = self.command_body(text, user_id=user_id, trigger_id=trigger_id)
        status, answer = await self.post(body, {**self.sign(body), **(headers or {})})
        return Sent(status, answer, rid, trigger)

    async def click(self, action_id: str, value: str, *, user_id: str) -> Sent:
        body, rid, trigger = self.action_body(action_id, value, user_id=user_id)
        status, answer = await self.post(body, self.sign(body))
        return Sent(status, answer, rid, trigger)


async def fence(sender: SlackSender, *, user_id: str) -> None:
    """Send `/gpu status` and wait for its reply: work the bot started before it (the same kind of work, started
    earlier) has then had its turn, so a test can check that nothing more happened."""
    sent = await sender.command("status", user_id=user_id)
    assert sent.status == 200, sent.body
    await sender.slack.wait_for_response(sent.response_id)


def blocks_text(message: Mapping[str, Any]) -> str:
    """All the text of a message's blocks, joined (what a reader would see)."""
    out: list[str] = [str(message.get("text", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks", []))
    return "\n".join(out)

