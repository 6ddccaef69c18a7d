"""The bot without an API server: it starts, answers status and /healthz, says why playbooks wait, retries.

`gpuctl bot serve`'s wiring (running_bot, not --demo) pointed at an API server nobody listens on; and
LazyEngine's retries with an opener that fails until the test lets it connect."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gpuctl.bot.commands import Run
from gpuctl.bot.engine_seam import EngineUnavailable
from gpuctl.bot.lazy_engine import LazyEngine
from gpuctl.bot.metrics import BotMetrics
from gpuctl.bot.server import running_bot
from gpuctl.errors import ClusterUnreachable
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Engine
from testbed.slack import FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.unit.bot.conftest import ALICE, SECRET, bot_settings
from tests.unit.bot.test_server import alert, get, payload, post_alerts

ALICE_AS = Requester(identity=Identity(user="alice", groups=("team-a",)), via="slack", detail="U0ALICE01")


async def test_the_bot_serves_without_an_api_server(slack: FakeSlack, tmp_path: Path, dead_kubeconfig: Path) -> None:
    settings = bot_settings(tmp_path, slack, demo=False, kubeconfig=dead_kubeconfig, audit=str(tmp_path / "audit.sqlite"))
    async with running_bot(settings) as bot:
        assert isinstance(bot.seam, LazyEngine)
        status, body = await get(f"{bot.url}/healthz")
        health = json.loads(body)
        assert status == 200 and health["cluster_ready"] is False and health["engine"].startswith("not connected: ")

        sender = SlackSender(bot.url, SECRET, slack)
        sent = await sender.command("status", user_id=ALICE)
        assert (sent.status, sent.body) == (200, "")
        said = blocks_text(await slack.wait_for_response(sent.response_id))
        assert "No data yet" in said and "cluster:" in said and "DISCONNECTED" in said

        sent = await sender.command("run reclaim-idle-gpus namespace=team-a", user_id=ALICE)
        said = blocks_text(await slack.wait_for_response(sent.response_id))
        assert "Playbooks not available yet" in said and "the playbook engine is not connected yet" in said
        assert "Traceback" not in said
        assert bot.metrics.requests.get(command="run", outcome="unavailable") == 1
        assert bot.metrics.runs.get(source="slack", outcome="unavailable") == 1
        assert 'gpuctl_bot_runs_total{source="slack",outcome="unavailable"} 1' in (await get(f"{bot.url}/metrics"))[1]

        # An alert that would be planned waits for the engine: 503, so Alertmanager sends it again; nothing posted.
        before = len(slack.called("chat.postMessage"))
        assert (await post_alerts(bot, payload(alert("ffff6666", exported_namespace="team-a"))))[0] == 503
        assert len(slack.called("chat.postMessage")) == before and "ffff6666" not in str(bot.alerts.episodes)


class Opener:
    """Opens "the engine" (any object: EngineLink only holds it) after `failures` refused attempts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.engine = SimpleNamespace(own=Identity(user="gpuctl-operator"))
        self.closed = False

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Engine]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ClusterUnreachable("cannot reach https://127.0.0.1:1: connection refused")
        try:
            yield cast(Engine, self.engine)
        finally:
            self.closed = True


async def test_the_engine_is_retried_until_it_connects() -> None:
    opener, metrics = Opener(failures=2), BotMetrics()
    lazy = LazyEngine(opener, runs=metrics.runs, first_retry_s=0.01, max_retry_s=0.02)
    with pytest.raises(EngineUnavailable, match="connecting to the cluster"):
        await lazy.runs(Identity(user="alice"))
    async with lazy:
        link = await lazy.connected(30)
        assert link.engine is opener.engine and opener.attempts == 3 and lazy.state == "connected"
        assert lazy.link is link
    assert opener.closed and metrics.runs.get(source="slack", outcome="unavailable") == 1


async def test_while_not_connected_every_engine_call_says_why() -> None:
    opener, metrics = Opener(failures=10**6), BotMetrics()
    lazy = LazyEngine(opener, runs=metrics.runs, first_retry_s=30, max_retry_s=30)
    async with lazy:
        await poll(lambda: lazy.retry_at, what="the first attempt to fail")
        calls: list[Any] = [
            lazy.run(ALICE_AS, Run(playbook="reclaim-idle-gpus", params={}), key="k"),
            lazy.runs(ALICE_AS.identity),
            lazy.audit(ALICE_AS.identity, None),
            lazy.review(ALICE_AS, "r-1", approve=True),
            lazy.follow("r-1"),
        ]
        for call in calls:
            with pytest.raises(EngineUnavailable, match=r"connection refused.*next try in \d+ s"):
                await call
        assert lazy.state.startswith("not connected: cannot reach")
    assert metrics.runs.get(source="slack", outcome="unavailable") == 3
    assert metrics.runs.get(source="approval", outcome="unavailable") == 2
