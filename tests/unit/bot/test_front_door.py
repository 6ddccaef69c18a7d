"""The front door: Slack's requests are verified and acked by a process of its own, whatever the main one does.

The held tests keep the bot's main process busy: the test's own main thread (which runs the bot's main loop:
cluster, answers, Fake Slack) spins in Python, holding the GIL and never letting the loop turn, while a
client in another process sends signed requests. What that client gets back arrived with the main loop held;
the answers (and the acks' counts) come once it is let go.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest

from gpuctl.bot.app import AfterAck, Later, Responder, Tally, Work
from gpuctl.bot.blocks import Reply, notice
from gpuctl.bot.commands import Run
from gpuctl.bot.desk import Desk
from gpuctl.bot.identity import IdentityResolver
from gpuctl.bot.metrics import BotMetrics
from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.identity import Requester
from gpuctl.priority import nice_of, thread_ids
from testbed.procs import FRONT_DOOR, alive, children
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text, fence
from testbed.waiting import poll
from tests.unit.bot.conftest import ALICE, SECRET, bot_settings
from tests.unit.bot.seams import Unexpected
from tests.unit.bot.test_cli_serve import STARTUP_S, environment
from tests.unit.bot.test_desk import MAP, POLICY, Fixed

HOLD_S = 60.0  # the most the client waits for one answer (then the test fails)

Post = tuple[str, Mapping[str, str]]  # a form body and its headers

CLIENT = """
import json, sys, urllib.error, urllib.request
answers = []
for body, headers in json.load(sys.stdin):
    request = urllib.request.Request(sys.argv[1] + "/slack/events", data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=float(sys.argv[2])) as answer:
            answers.append([answer.status, answer.read().decode()])
    except urllib.error.HTTPError as e:
        answers.append([e.code, e.read().decode()])
print(json.dumps(answers))
"""


def sent_while_held(url: str, posts: list[Post]) -> list[tuple[int, str]]:
    """The answers to `posts`, sent in turn by another process while this (main) thread is busy in Python."""
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(HOLD_S)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps([[body, dict(headers)] for body, headers in posts]))
    client.stdin.close()
    while client.poll() is None:  # busy on purpose: the GIL held, the bot's main loop never turns meanwhile
        sum(range(1000))
    answers = client.stdout.read()
    assert client.returncode == 0, "the client got no answer (see its traceback above)"
    return [(status, text) for status, text in json.loads(answers)]


def doors(parent: int) -> list[int]:
    """The front door processes `parent` started."""
    return children(parent, FRONT_DOOR)


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


async def test_commands_are_acked_while_the_main_thread_is_busy(bot: RunningBot, sender: SlackSender, slack: FakeSlack) -> None:
    await sender.command("help", user_id=ALICE)
    acks = bot.metrics.ack_seconds.count(kind="command")
    status, rid, _ = sender.command_body("status", user_id=ALICE)
    help_body, _, _ = sender.command_body("help", user_id=ALICE)
    forged, _, _ = sender.command_body("status", user_id=ALICE)
    answers = sent_while_held(bot.url, [(status, sender.sign(status)), (help_body, sender.sign(help_body)),
                                        (forged, sender.sign(forged, secret="not-the-secret"))])  # fmt: skip
    (status_ack, help_ack, forged_ack) = answers
    assert status_ack == (200, "")  # acked empty: the answer is the main loop's work
    assert help_ack[0] == 200 and "`/gpu status`" in blocks_text(json.loads(help_ack[1]))  # answered in the ack
    assert forged_ack[0] == 401  # Bolt's signature check runs in the front door
    assert slack.responses(rid) == [] and bot.metrics.ack_seconds.count(kind="command") == acks  # nothing taken yet
    assert "allocatable" in blocks_text(await slack.wait_for_response(rid))  # once the main loop turns again
    await poll(lambda: bot.metrics.ack_seconds.count(kind="command"), lambda n: n == acks + 3,
               what="each ack counted in the main process, the 401 too")  # fmt: skip


class Recording(Unexpected):
    """An engine seam that plans every run at once and remembers its idempotency key."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        self.keys.append(key)
        return notice("Planned", command.playbook)


async def test_a_retry_acked_while_the_main_thread_is_busy_starts_one_run(slack: FakeSlack, tmp_path: Path) -> None:
    engine = Recording()
    async with running_bot(bot_settings(tmp_path, slack), seam=engine) as running:
        await running.cluster.wait_ready(30)
        sender = SlackSender(running.url, SECRET, slack)
        body, rid, trigger = sender.command_body("run reclaim-idle-gpus namespace=team-a", user_id=ALICE)
        retry = {**sender.sign(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert sent_while_held(running.url, [(body, sender.sign(body)), (body, retry)]) == [(200, ""), (200, "")]
        assert "reclaim-idle-gpus" in blocks_text(await slack.wait_for_response(rid))
        await fence(sender, user_id=ALICE)
        assert engine.keys == [f"slack:T0TESTBED:{trigger}"] and len(slack.responses(rid)) == 1
        assert running.metrics.duplicates.get() == 1


async def test_the_signing_secret_is_neither_on_the_front_doors_command_line_nor_in_its_environment(
    bot: RunningBot,
) -> None:
    (door,) = doors(os.getpid())
    assert SECRET.encode() not in proc_file(door, "cmdline")
    assert SECRET.encode() not in proc_file(door, "environ")


async def test_a_front_door_that_dies_is_replaced(bot: RunningBot, sender: SlackSender, slack: FakeSlack) -> None:
    (door,) = doors(os.getpid())
    os.kill(door, signal.SIGKILL)
    await poll(lambda: doors(os.getpid()), lambda now: len(now) == 1 and door not in now, timeout_s=120,
               what="another front door started")  # fmt: skip
    await fence(sender, user_id=ALICE)  # it acks, and the answer comes


async def test_a_port_in_use_is_an_error_from_running_bot_and_leaves_no_front_door(slack: FakeSlack, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        before = doors(os.getpid())
        with pytest.raises(OSError):
            async with running_bot(bot_settings(tmp_path, slack, bot_port=taken.getsockname()[1])):
                pytest.fail("served on a port in use")
        assert doors(os.getpid()) == before


async def test_the_front_door_ends_when_the_bot_process_is_killed(slack: FakeSlack, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuctl", "bot", "serve", "--demo", "--host", "127.0.0.1", "--port", "0",
        env=environment(tmp_path, slack.api_url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_S):
            line = (await process.stdout.readline()).decode()
        assert "serving on http://" in line, line
        (door,) = doors(process.pid)
        assert BOT_TOKEN.encode() not in proc_file(door, "environ")  # GPUCTL_* not passed on
    finally:
        process.kill()
        await process.wait()
    await poll(lambda: alive(door), lambda now: not now, what="the front door gone with its bot")


async def test_work_taken_twice_from_front_doors_is_done_once(slack: FakeSlack) -> None:
    """A front door that died after handing a request's work over, before its ack got out: Slack retries, and the
    next front door (which has not seen it) hands the same work over again."""
    engine = Recording()
    desk = Desk(view=Fixed(None), resolver=IdentityResolver(MAP), policy=POLICY, seam=engine)
    metrics, later = BotMetrics(), Later()
    async with aiohttp.ClientSession() as session:
        after = AfterAck(desk, metrics=metrics, respond=Responder(session), later=later)
        body, rid, trigger = SlackSender("http://unused", SECRET, slack).command_body("run reclaim-idle-gpus", user_id=ALICE)
        for _ in range(2):
            after.take(Tally(work=[Work(what="/gpu", body=dict(urllib.parse.parse_qsl(body)))]))
        assert "reclaim-idle-gpus" in blocks_text(await slack.wait_for_response(rid))
        await poll(lambda: later._tasks, lambda tasks: not tasks, what="the answer's task to end")
        await later.aclose()
    assert engine.keys == [f"slack:T0TESTBED:{trigger}"] and len(slack.responses(rid)) == 1
    assert metrics.duplicates.get() == 1


@pytest.mark.parametrize(("setting", "work"), [(None, 5), ("0", 0), ("9", 9)], ids=["default", "off", "nine"])
async def test_the_bots_work_runs_below_its_front_door_restarted_too(
    slack: FakeSlack, tmp_path: Path, setting: str | None, work: int
) -> None:
    base = nice_of(threading.get_native_id())  # what a process this thread starts begins with
    assert base < 5, "run the tests below nice 5: the bot's threads cannot go lower than they start"
    extra = {"GPUCTL_BOT_WORK_NICE": setting} if setting is not None else {}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuctl", "bot", "serve", "--demo", "--host", "127.0.0.1", "--port", "0",
        env=environment(tmp_path, slack.api_url, **extra), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_S):
            line = (await process.stdout.readline()).decode()
        sender = SlackSender(line.split("serving on ", 1)[1].strip(), SECRET, slack)
        await fence(sender, user_id=ALICE)  # an answer: the worker threads started after the lowering are there
        (door,) = doors(process.pid)
        os.kill(door, signal.SIGKILL)
        await poll(lambda: doors(process.pid), lambda now: len(now) == 1 and door not in now, timeout_s=120,
                   what="another front door started")  # fmt: skip
        await fence(sender, user_id=ALICE)
        (door,) = doors(process.pid)
        bot = sorted(nice_of(tid) for tid in thread_ids(process.pid))
        assert len(bot) > 3 and bot == [base] + [max(base, work)] * (len(bot) - 1)  # one kept back, to start doors
        assert {nice_of(tid) for tid in thread_ids(door)} == {base}
    finally:
        process.kill()
        await process.wait()
