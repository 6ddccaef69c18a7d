"""The bot end to end over real HTTP: signed Slack requests in, Web API calls and response_url posts out.

The cluster is the `--demo` fleet; Slack is testbed.slack's local stand-in
(the bot's own AsyncWebClient talks HTTP to it). The test bed's real
Alertmanager and cluster are in tests/integration/test_bot_testbed.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.bot.blocks import Reply, notice
from gpuctl.bot.commands import Run
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION, review_buttons
from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.identity import Requester
from gpuctl.query.fleet import idle_holders, totals
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text, fence
from tests.unit.bot.conftest import ALICE, BOB, NOBODY, ONCALL, SECRET, bot_settings
from tests.unit.bot.seams import Unexpected


async def reply_to(sender: SlackSender, text: str, user: str = ALICE) -> str:
    sent = await sender.command(text, user_id=user)
    assert sent.status == 200, sent.body
    assert sent.body == ""  # acked empty; the answer comes on response_url
    message = await sender.slack.wait_for_response(sent.response_id)
    assert message["response_type"] == "ephemeral"
    return blocks_text(message)


async def test_each_read_command_answers_from_the_live_fleet(bot: RunningBot, sender: SlackSender) -> None:
    snap, index = await bot.desk.view.current() or pytest.fail("no data")
    t = totals(snap)
    assert f"{t.gpus} allocatable" in await reply_to(sender, "status")
    holder = idle_holders(snap)[0]
    assert holder.key in await reply_to(sender, "idle")
    assert holder.key in await reply_to(sender, f"idle ns:{holder.namespace}")
    quota = next(n for n in snap.namespaces if n.gpu_quota_hard is not None)
    assert f"Namespace {quota.name}" in await reply_to(sender, f"quota {quota.name}")
    assert quota.name in await reply_to(sender, "quota")
    pools = await reply_to(sender, "pools")
    assert all(p.name in pools for p in snap.pools), pools
    assert f"Node {holder.node}" in await reply_to(sender, f"node {holder.node}")
    assert f"Pod {holder.key}" in await reply_to(sender, f"pod {holder.key}")
    busiest = max((g for g in index.gpus.values() if g.pod and g.util_pct is not None), key=lambda g: g.util_pct or 0)
    assert busiest.node in await reply_to(sender, "top 3")


async def test_help_and_bad_input_are_answered_in_the_ack(sender: SlackSender) -> None:
    sent = await sender.command("help", user_id=NOBODY)
    assert sent.status == 200 and "`/gpu status`" in blocks_text(sent.json())
    bad = await sender.command("idle <!channel> now", user_id=ALICE)
    text = blocks_text(bad.json())
    assert bad.status == 200 and "is not a filter term" in text and "<!channel>" not in text
    assert "Usage: `/gpu idle" in text


async def test_engine_commands_reach_the_demo_engine(sender: SlackSender) -> None:
    assert "Playbook runs" in await reply_to(sender, "runs")  # the demo's engine (test_demo_engine.py runs playbooks)
    assert "No audit records for run `some-run`" in await reply_to(sender, "audit some-run")


async def test_bad_signature_is_401_and_nothing_happens(sender: SlackSender, slack: FakeSlack) -> None:
    body, rid, _ = sender.command_body("status", user_id=ALICE)
    wrong_secret = sender.sign(body, secret="not-the-secret")
    assert (await sender.post(body, wrong_secret))[0] == 401
    tampered = sender.sign(body)
    assert (await sender.post(body.replace("status", "pools"), tampered))[0] == 401
    assert (await sender.post(body, {}))[0] == 401  # no signature at all
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sender.bot_url}/slack/events", data=b"\xff\xfe=\x80", headers=sender.sign("x")) as resp:
            assert resp.status == 400  # not even text
    await fence(sender, user_id=ALICE)
    assert slack.responses(rid) == []


async def test_stale_timestamp_is_rejected_even_with_a_valid_signature(sender: SlackSender, slack: FakeSlack) -> None:
    body, rid, _ = sender.command_body("status", user_id=ALICE)
    status, _ = await sender.post(body, sender.sign(body, timestamp=int(time.time()) - 6 * 60))
    assert status == 401
    future, _ = await sender.post(body, sender.sign(body, timestamp=int(time.time()) + 6 * 60))
    assert future == 401
    await fence(sender, user_id=ALICE)
    assert slack.responses(rid) == []


async def test_identity_by_email_and_by_user_group(sender: SlackSender, slack: FakeSlack) -> None:
    assert "allocatable" in await reply_to(sender, "status", user=BOB)
    (lookup, *_) = [c for c in slack.called("users.info") if c.args.get("user") == BOB]
    assert lookup.token == BOT_TOKEN
    assert "allocatable" in await reply_to(sender, "status", user=ONCALL)
    assert slack.called("usergroups.users.list")


async def test_unmapped_user_sees_nothing_when_the_policy_says_so(sender: SlackSender) -> None:
    answer = await reply_to(sender, "status", user=NOBODY)
    assert "Not allowed" in answer and f"({NOBODY}) is not mapped" in answer and "allocatable" not in answer


async def test_unmapped_user_may_read_if_policy_allows_but_never_act(slack: FakeSlack, tmp_path) -> None:
    from tests.unit.bot.conftest import POLICY, write

    open_policy = write(tmp_path, "open-policy.yaml", POLICY.replace("unmapped: none", "unmapped: read_only"))
    async with running_bot(bot_settings(tmp_path, slack, policy=open_policy)) as running:
        await running.cluster.wait_ready(30)
        sender = SlackSender(running.url, SECRET, slack)
        assert "allocatable" in await reply_to(sender, "status", user=NOBODY)
        refused = await reply_to(sender, "run reclaim-idle-gpus namespace=team-a", user=NOBODY)
        assert "unmapped users can never run playbooks" in refused
        click = await sender.click(APPROVE_ACTION, "some-run", user_id=NOBODY)
        assert click.status == 200
        assert "unmapped users can never approve runs" in blocks_text(await slack.wait_for_response(click.response_id))


async def test_buttons_of_mapped_users_reach_the_engine_seam(sender: SlackSender, slack: FakeSlack) -> None:
    buttons = review_buttons("reclaim-idle-gpus-1")["elements"]  # what a plan awaiting approval carries
    assert [b["action_id"] for b in buttons] == [APPROVE_ACTION, DENY_ACTION]
    for button in buttons:
        click = await sender.click(button["action_id"], button["value"], user_id=ONCALL)
        assert click.status == 200
        text = blocks_text(await slack.wait_for_response(click.response_id))
        assert "Could not" in text and "reclaim-idle-gpus-1" in text  # the demo's engine has no such run


async def test_a_slack_retry_never_acts_twice(bot: RunningBot, sender: SlackSender, slack: FakeSlack) -> None:
    duplicates = bot.metrics.duplicates.get()
    body, rid, _ = sender.command_body("status", user_id=ALICE)
    assert (await sender.post(body, sender.sign(body)))[0] == 200
    retry = {**sender.sign(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await sender.post(body, retry)) == (200, "")
    await slack.wait_for_response(rid)
    await fence(sender, user_id=ALICE)
    assert len(slack.responses(rid)) == 1
    assert bot.metrics.duplicates.get() == duplicates + 1


class SlowEngine(Unexpected):
    """An engine seam that answers only when the test lets it: shows the ack does not wait for the work."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.keys: list[str] = []

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        self.keys.append(key)
        self.started.set()
        await self.release.wait()
        return notice("Planned", f"{command.playbook} as {requester.identity.user} via {requester.via}")


async def test_ack_comes_before_the_slow_work_and_the_answer_after(slack: FakeSlack, tmp_path) -> None:
    engine = SlowEngine()
    async with running_bot(bot_settings(tmp_path, slack), seam=engine) as running:
        await running.cluster.wait_ready(30)
        sender = SlackSender(running.url, SECRET, slack)
        sent = await sender.command("run reclaim-idle-gpus namespace=team-a", user_id=ALICE)
        assert (sent.status, sent.body) == (200, "")  # acked while the engine is still working
        await engine.started.wait()
        assert slack.responses(sent.response_id) == []
        engine.release.set()
        text = blocks_text(await slack.wait_for_response(sent.response_id))
        assert "reclaim-idle-gpus as alice via slack" in text
        assert engine.keys == [f"slack:T0TESTBED:{sent.trigger_id}"]
        assert running.metrics.ack_seconds.count(kind="command") == 1


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_healthz_and_metrics(bot: RunningBot, sender: SlackSender) -> None:
    await reply_to(sender, "pools")
    status, body = await get(f"{bot.url}/healthz")
    assert status == 200 and json.loads(body) == {"ok": True, "cluster_ready": True, "stopped_sources": [],
                                        "engine": "connected"}
    status, text = await get(f"{bot.url}/metrics")
    assert status == 200
    assert 'gpuctl_bot_requests_total{command="pools",outcome="ok"}' in text
    assert 'gpuctl_bot_ack_seconds_bucket{kind="command",le="+Inf"}' in text
    assert "# TYPE gpuctl_bot_ack_seconds histogram" in text


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4", "groupKey": "{}:{alertname=\"GpuIdleWhileAllocated\"}", "truncatedAlerts": 0, "status": status,
        "receiver": "gpuctl", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager", "alerts": list(alerts),
    }  # fmt: skip


def alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "GpuIdleWhileAllocated", "severity": "warning", **labels},
        "annotations": {"summary": "GPU 0 on node-1 is allocated to team-a/nb-0 but has been under 5% busy"},
        "startsAt": "2026-01-02T03:04:05.123Z",
        "endsAt": "2026-01-02T04:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
    }  # fmt: skip


async def post_alerts(bot: RunningBot, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}/alertmanager", data=data, headers={"Content-Type": "application/json", **(headers or {})}) as resp:
            return resp.status, await resp.text()


async def test_alert_posts_once_per_episode_and_resolves_in_its_thread(bot: RunningBot, slack: FakeSlack) -> None:
    before = len(slack.called("chat.postMessage"))
    firing = payload(alert("aaaa1111", exported_namespace="team-a", Hostname="node-1", gpu="0"))
    assert (await post_alerts(bot, firing))[0] == 200
    assert (await post_alerts(bot, firing))[0] == 200  # Alertmanager's repeat_interval
    assert (await post_alerts(bot, firing))[0] == 200
    posts = slack.called("chat.postMessage")[before:]
    assert len(posts) == 1
    post = posts[0]
    assert post.args["channel"] == "C0ALERTS1" and post.token == BOT_TOKEN
    text = blocks_text(post.args)
    assert "<!subteam^S0ONCALL1>" in text and "*GpuIdleWhileAllocated* firing (warning)" in text
    assert "Playbook `reclaim-idle-gpus` (propose) with" in text and "namespace=team-a" in text and "max_pods=2" in text
    assert "Not planned" in text and "no alert rule in the gpuctl policy lets alerts start this playbook" in text

    resolved = payload(alert("aaaa1111", "resolved", exported_namespace="team-a"), status="resolved")
    assert (await post_alerts(bot, resolved))[0] == 200
    assert (await post_alerts(bot, resolved))[0] == 200
    (update,) = [c for c in slack.called("chat.update") if "aaaa1111" in blocks_text(c.args)]
    assert (update.args["channel"], update.args["ts"]) == (post.answer["channel"], post.answer["ts"])
    assert "*GpuIdleWhileAllocated* resolved at 2026-01-02 04:00:00Z" in blocks_text(update.args)
    thread = [c for c in slack.called("chat.postMessage") if c.args.get("thread_ts") == update.args["ts"]]
    assert len(thread) == 1 and "resolved at 2026-01-02 04:00:00Z" in thread[0].args["text"]
    assert bot.metrics.alerts.get(outcome="posted") >= 1 and bot.metrics.alerts.get(outcome="repeats") >= 2


async def test_alert_parameters_are_validated_from_labels(bot: RunningBot, slack: FakeSlack) -> None:
    before = len(slack.called("chat.postMessage"))
    bad = payload(alert("bbbb2222", exported_namespace="Not_A_Namespace!"))
    assert (await post_alerts(bot, bad))[0] == 200
    (post,) = slack.called("chat.postMessage")[before:]
    text = blocks_text(post.args)
    assert "not proposed" in text and "namespace=" in text and "Not planned" not in text


async def test_unmatched_alerts_are_not_posted(bot: RunningBot, slack: FakeSlack) -> None:
    before = len(slack.called("chat.postMessage"))
    other = payload(alert("cccc3333") | {"labels": {"alertname": "DiskFull"}})
    status, body = await post_alerts(bot, other)
    assert status == 200 and json.loads(body) == {"unmatched": 1}
    assert len(slack.called("chat.postMessage")) == before


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not an Alertmanager version 4 payload"),
        (b"[]", 400, "not an Alertmanager version 4 payload"),
        (json.dumps(payload() | {"version": "3"}).encode(), 400, "version"),
        (json.dumps(payload({"status": "firing"})).encode(), 400, "alerts.0.labels"),
        (json.dumps(payload(alert("x") | {"startsAt": "yesterday"})).encode(), 400, "startsAt"),
        (json.dumps(payload(*[alert(f"f{i}") for i in range(1001)])).encode(), 400, "alerts"),
        (b"{" + b" " * (1 << 20) + b"}", 413, "byte limit"),
    ],
    ids=["not-json", "not-an-object", "version-3", "alert-without-labels", "bad-time", "too-many-alerts", "oversized"],
)
async def test_garbled_or_oversized_alert_bodies_get_4xx_and_a_log_line(
    bot: RunningBot, caplog: pytest.LogCaptureFixture, body: bytes, status: int, says: str
) -> None:
    with caplog.at_level("WARNING", logger="gpuctl.bot.server"):
        got, text = await post_alerts(bot, body)
    assert got == status and says in json.loads(text)["error"]
    assert any("alertmanager webhook from" in r.getMessage() and says in r.getMessage() for r in caplog.records)
    assert (await get(f"{bot.url}/healthz"))[0] == 200  # still serving


async def test_a_chunked_body_over_the_limit_is_refused_too(bot: RunningBot) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"version": "4", "alerts": ['
        for _ in range(64):
            yield b" " * (1 << 15)

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}/alertmanager", data=chunks()) as resp:  # no Content-Length
            assert resp.status == 413 and "byte limit" in (await resp.json())["error"]


async def test_a_bearer_token_guards_the_webhook_when_set(slack: FakeSlack, tmp_path) -> None:
    async with running_bot(bot_settings(tmp_path, slack, alertmanager_token="am-secret")) as running:
        await running.seam.connected(30)  # type: ignore[attr-defined]  # the demo's engine plans the alert
        firing = payload(alert("dddd4444", exported_namespace="team-a"))
        assert (await post_alerts(running, firing))[0] == 401
        assert (await post_alerts(running, firing, {"Authorization": "Bearer nope"}))[0] == 401
        assert (await post_alerts(running, firing, {"Authorization": "Bearer am-secret"}))[0] == 200


async def test_a_failed_slack_post_answers_503_so_alertmanager_retries(bot: RunningBot, slack: FakeSlack) -> None:
    firing = payload(alert("eeee5555", exported_namespace="team-a"))
    slack.fail["chat.postMessage"] = "channel_not_found"
    try:
        assert (await post_alerts(bot, firing))[0] == 503
    finally:
        del slack.fail["chat.postMessage"]
    before = len(slack.called("chat.postMessage"))
    assert (await post_alerts(bot, firing))[0] == 200
    assert len(slack.called("chat.postMessage")) == before + 1


TEXT = st.text(max_size=120) | st.lists(
    st.sampled_from(["status", "idle", "node", "pod", "top", "run", "audit", "quota", "ns:", "&lt;!here&gt;", "a/b", "=", "99"]),
    max_size=6,
).map(" ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
async def test_fuzzed_command_text_never_crashes_or_leaks_a_traceback(sender: SlackSender, slack: FakeSlack, text: str) -> None:
    sent = await sender.command(text, user_id=ALICE)
    assert sent.status == 200
    message = sent.json() if sent.body else await slack.wait_for_response(sent.response_id)
    shown = blocks_text(message)
    assert "Traceback" not in shown and "Something went wrong" not in shown
    assert message.get("blocks")


async def test_a_burst_of_doctor_commands_is_one_examination(sender: SlackSender, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpuctl.doctor.run as doctor_run

    examine = doctor_run.examine_live
    examined: list[object] = []

    async def counted(cluster: Any, options: Any) -> Any:
        examined.append(options)
        return await examine(cluster, options)

    monkeypatch.setattr(doctor_run, "examine_live", counted)
    replies = await asyncio.gather(*(reply_to(sender, "doctor", user) for user in (ALICE, BOB, ALICE)))
    assert len(examined) == 1
    stamps = {next(line for line in text.splitlines() if " checks at " in line) for text in replies}
    assert len(stamps) == 1  # one report, one time taken, said in every reply
    await reply_to(sender, "doctor team-a")
    assert len(examined) == 2  # other options: an examination of its own
