"""`gpuctl bot serve --demo` as a real process: settings from GPUCTL_* variables, secrets never printed."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gpuctl.cli import main
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text
from tests.unit.bot.conftest import ALICE, IDENTITY_MAP, POLICY, SECRET, write
from tests.unit.conftest import stopped_by_a_signal

STARTUP_S = 60.0


def environment(tmp_path: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "SLACK_", "KUBE"))}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home"),
            "GPUCTL_SLACK_BOT_TOKEN": BOT_TOKEN, "GPUCTL_SLACK_SIGNING_SECRET": SECRET,
            "GPUCTL_SLACK_API_URL": api_url, **extra}  # fmt: skip
    return env


@stopped_by_a_signal
async def test_serve_demo_answers_signed_commands_and_stops_on_a_signal(
    slack: FakeSlack, tmp_path: Path, stop: signal.Signals, started: Callable[[], None] | None, code: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuctl", "bot", "serve", "--demo", "--host", "127.0.0.1", "--port", "0", "-vv",
        env=environment(tmp_path, slack.api_url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=started,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(STARTUP_S):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"serving on (http://\S+)", line)
        assert match, line
        sender = SlackSender(match.group(1), SECRET, slack)
        sent = await sender.command("status", user_id=ALICE)  # --demo without a policy: everyone may view
        assert sent.status == 200
        assert "allocatable" in blocks_text(await slack.wait_for_response(sent.response_id))
    finally:
        process.send_signal(stop)
        _, err = await process.communicate()
    assert process.returncode == code, err.decode()
    log = err.decode()
    assert "gpuctl bot serving on 127.0.0.1:" in log  # -vv logs
    assert BOT_TOKEN not in log and SECRET not in log
    assert "Traceback" not in log


async def test_serve_starts_and_answers_with_the_api_server_down(slack: FakeSlack, tmp_path: Path, dead_kubeconfig: Path) -> None:
    env = environment(tmp_path, slack.api_url, GPUCTL_AUDIT=str(tmp_path / "audit.sqlite"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuctl", "bot", "serve", "--kubeconfig", str(dead_kubeconfig), "--host", "127.0.0.1",
        "--port", "0", "-v", "--identity-map", str(write(tmp_path, "ids.yaml", IDENTITY_MAP)),
        "--policy", str(write(tmp_path, "policy.yaml", POLICY)), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(STARTUP_S):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"serving on (http://\S+)", line)
        assert match, line
        async with aiohttp.ClientSession() as session, session.get(f"{match.group(1)}/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["cluster_ready"] is False and health["engine"].startswith("not connected")
        sender = SlackSender(match.group(1), SECRET, slack)
        sent = await sender.command("status", user_id=ALICE)
        assert "No data yet" in blocks_text(await slack.wait_for_response(sent.response_id))
        sent = await sender.command("runs", user_id=ALICE)
        said = blocks_text(await slack.wait_for_response(sent.response_id))
        assert "Playbooks not available yet" in said and "not connected yet" in said
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await process.communicate()
    assert process.returncode == 130, err.decode()
    assert "Traceback" not in err.decode() and "playbook engine not connected" in err.decode()


@pytest.mark.parametrize(
    ("drop", "flag", "says"),
    [
        ("GPUCTL_SLACK_SIGNING_SECRET", None, "the bot needs slack_signing_secret"),
        ("GPUCTL_SLACK_BOT_TOKEN", None, "the bot needs slack_bot_token"),
        (None, "--socket-mode", "the bot needs slack_app_token"),
    ],
)
def test_a_missing_secret_is_named_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, drop: str | None, flag: str | None, says: str
) -> None:
    env = environment(tmp_path, "http://127.0.0.1:1/api/")
    monkeypatch.setattr(os, "environ", {k: v for k, v in env.items() if k != drop})
    err = io.StringIO()
    assert main(["bot", "serve", "--demo", "--port", "0", *([flag] if flag else [])], err=err) == 2
    assert says in err.getvalue() and SECRET not in err.getvalue() and BOT_TOKEN not in err.getvalue()
