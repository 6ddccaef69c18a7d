"""`--socket-mode`: Slack's requests over the Socket Mode websocket (app token), no public endpoint."""

from __future__ import annotations

import urllib.parse

import aiohttp

from gpuctl.bot.server import running_bot
from testbed.slack import APP_TOKEN, FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.unit.bot.conftest import ALICE, SECRET, bot_settings


async def test_commands_arrive_over_the_socket_and_are_acked_there(slack: FakeSlack, tmp_path) -> None:
    async with running_bot(bot_settings(tmp_path, slack, slack_app_token=APP_TOKEN), socket_mode=True) as bot:
        await bot.cluster.wait_ready(30)
        opened = slack.called("apps.connections.open")
        assert opened and opened[-1].token == APP_TOKEN
        async with aiohttp.ClientSession() as session, session.post(f"{bot.url}/slack/events", data=b"x") as resp:
            assert resp.status == 404  # nothing to sign in socket mode: the HTTP route is not served

        sender = SlackSender(bot.url, SECRET, slack)

        def command(text: str, trigger: str | None = None) -> tuple[dict[str, str], str]:
            body, rid, _ = sender.command_body(text, user_id=ALICE, trigger_id=trigger)
            return dict(urllib.parse.parse_qsl(body)), rid

        status, rid = command("status", trigger="trig.socket.1")
        envelope = await slack.send_envelope("slash_commands", status)
        (ack,) = await poll(lambda: slack.envelope_acks(envelope), what="the ack of the status envelope")
        assert "payload" not in ack  # acked empty, answered on response_url
        assert "allocatable" in blocks_text(await slack.wait_for_response(rid))

        # Slack re-sends the envelope (same trigger_id): acked again, never answered twice.
        again = await slack.send_envelope("slash_commands", status, retry_attempt=1)
        await poll(lambda: slack.envelope_acks(again), what="the ack of the retried envelope")
        helped, _ = command("help")
        answered = await slack.send_envelope("slash_commands", helped)
        (help_ack,) = await poll(lambda: slack.envelope_acks(answered), what="the ack of help")
        assert "`/gpu status`" in blocks_text(help_ack["payload"])  # answered in the ack itself
        assert len(slack.responses(rid)) == 1 and bot.metrics.duplicates.get() == 1
        assert bot.metrics.ack_seconds.count(kind="command") == 3
