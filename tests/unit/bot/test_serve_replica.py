"""`gpuctl serve --demo` in process: the bot, the executor and the health server of one replica."""

from __future__ import annotations

import asyncio
import io
import re
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gpuctl.playbooks.service as service
from gpuctl.playbooks.engine import Engine
from gpuctl.serve.replica import serve
from testbed.slack import FakeSlack
from testbed.waiting import poll
from tests.unit.bot.conftest import bot_settings


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def test_the_bot_and_the_executor_share_one_engine(slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str | None] = []
    open_engine = service.open_engine

    def counted(*args: Any, **kw: Any) -> AbstractAsyncContextManager[Engine]:
        opened.append(kw.get("host"))
        return open_engine(*args, **kw)

    monkeypatch.setattr(service, "open_engine", counted)
    out = io.StringIO()
    task = asyncio.create_task(serve(bot_settings(tmp_path, slack, health_port=0, replica_name="replica-1"), out=out))
    try:
        line = await poll(out.getvalue, lambda text: "serving" in text, what="gpuctl serve to serve")
        url = (re.search(r"health on (\S+)", line) or pytest.fail(line)).group(1)
        # The executor runs (it leads the demo's Lease) on the one engine the bot opened, named after the replica.
        report = await poll(lambda: health(url), lambda h: h["role"] == "leader", what="the replica to lead")
        assert report["ready"] and report["bot"] == "serving"
        assert opened == ["replica-1"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
