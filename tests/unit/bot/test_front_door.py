"""The front door: Slack's requests are verified and acked on a loop of their own, while the main loop is held.

Each test holds the main loop (the test's own, which runs the bot's cluster, answers and Fake Slack) by
waiting on a threading.Event inside a coroutine, while a thread sends signed requests: what that thread
gets back arrived with the main loop held. The answers come once it is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import threading
from collections.abc import Callable, Mapping

import pytest
from aiohttp import web

from gpuctl.bot.app import Later
from gpuctl.bot.front_door import MainLoop, front_door
from gpuctl.bot.server import RunningBot
from testbed.slack import FakeSlack, SlackSender, blocks_text, fence
from testbed.waiting import poll
from tests.unit.bot.conftest import ALICE

HOLD_S = 60.0  # the most a test holds the main loop when the front door fails to answer (then the test fails)

Post = tuple[str, Mapping[str, str]]  # a form body and its headers


def sent_while_held(sender: SlackSender, posts: list[Post]) -> list[tuple[int, str]] | None:
    """Hold the calling (main) loop while a thread sends `posts` in turn: their answers, or None if they did
    not all come back while the loop was held."""
    answers: list[tuple[int, str]] = []
    done = threading.Event()

    async def send_all() -> None:
        for body, headers in posts:
            answers.append(await sender.post(body, headers))

    def client() -> None:
        try:
            asyncio.run(send_all())
        finally:
            done.set()

    thread = threading.Thread(target=client, name="test-slack-client")
    thread.start()
    came_back = done.wait(HOLD_S)  # blocks the main loop: nothing of the bot's main loop runs meanwhile
    thread.join()
    return answers if came_back and len(answers) == len(posts) else None


async def test_commands_are_acked_while_the_main_loop_is_held(bot: RunningBot, sender: SlackSender, slack: FakeSlack) -> None:
    await sender.command("help", user_id=ALICE)  # Bolt's first request asks auth.test of Fake Slack (main loop)
    acks = bot.metrics.ack_seconds.count(kind="command")
    status, rid, _ = sender.command_body("status", user_id=ALICE)
    help_body, _, _ = sender.command_body("help", user_id=ALICE)
    forged, _, _ = sender.command_body("status", user_id=ALICE)
    answers = sent_while_held(sender, [(status, sender.sign(status)), (help_body, sender.sign(help_body)),
                                       (forged, sender.sign(forged, secret="not-the-secret"))])  # fmt: skip
    assert answers is not None, "the acks waited for the main loop"
    (status_ack, help_ack, forged_ack) = answers
    assert status_ack == (200, "")  # acked empty: the answer is the main loop's work
    assert help_ack[0] == 200 and "`/gpu status`" in blocks_text(json.loads(help_ack[1]))  # answered in the ack
    assert forged_ack[0] == 401  # Bolt's signature check runs in the front door
    assert slack.responses(rid) == []
    assert "allocatable" in blocks_text(await slack.wait_for_response(rid))  # once the main loop turns again
    assert bot.metrics.ack_seconds.count(kind="command") == acks + 3  # each answered, the 401 too


async def test_a_retry_acked_while_the_main_loop_is_held_acts_once(bot: RunningBot, sender: SlackSender,
                                                                    slack: FakeSlack) -> None:  # fmt: skip
    await sender.command("help", user_id=ALICE)
    duplicates = bot.metrics.duplicates.get()
    body, rid, _ = sender.command_body("status", user_id=ALICE)
    retry = {**sender.sign(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert sent_while_held(sender, [(body, sender.sign(body)), (body, retry)]) == [(200, ""), (200, "")]
    await slack.wait_for_response(rid)
    await fence(sender, user_id=ALICE)
    assert len(slack.responses(rid)) == 1
    assert bot.metrics.duplicates.get() == duplicates + 1


async def test_later_starts_work_from_another_thread_on_its_own_loop() -> None:
    later = Later()
    ran_on: list[asyncio.AbstractEventLoop] = []
    done = asyncio.Event()

    async def work() -> None:
        ran_on.append(asyncio.get_running_loop())
        done.set()

    await asyncio.to_thread(later.start, work(), "from a thread")
    await done.wait()
    assert ran_on == [asyncio.get_running_loop()]


async def test_work_handed_to_later_after_it_closed_is_dropped() -> None:
    later = Later()
    await later.aclose()
    started: list[str] = []

    async def work() -> None:
        started.append("ran")

    await asyncio.to_thread(later.start, work(), "too late")
    await MainLoop(asyncio.get_running_loop()).run(asyncio.sleep(0))  # the hand-over has had its turn
    assert started == [] and not later._tasks


def test_work_handed_to_later_once_its_loop_is_closed_is_closed_not_left_pending() -> None:
    async def made() -> Later:
        return Later()

    loop = asyncio.new_event_loop()
    later = loop.run_until_complete(made())
    loop.close()

    async def work() -> None:
        raise AssertionError("never runs")

    for _ in range(2):  # the second hand-over too: nothing is left queued for a wake-up that never comes
        pending = work()
        later.start(pending, "after the bot stopped")
        assert pending.cr_frame is None  # closed: no "never awaited" warning, nothing held


async def test_main_loop_runs_work_there_and_returns_its_result() -> None:
    main = MainLoop(asyncio.get_running_loop())

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert await asyncio.to_thread(asyncio.run, main.run(where())) is asyncio.get_running_loop()
    assert await main.run(where()) is asyncio.get_running_loop()  # on the main loop itself: awaited directly


async def test_calls_queued_from_a_thread_before_the_loop_turns_share_one_wake_up(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    main = MainLoop(loop)
    wake_ups: list[object] = []
    wake = loop.call_soon_threadsafe

    def counted(callback: Callable[..., object], *args: object) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is main:  # not the wake-ups of asyncio.to_thread's own future
            wake_ups.append(callback)
        return wake(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    ran: list[int] = []
    thread = threading.Thread(target=lambda: [main.call_soon(functools.partial(ran.append, n)) for n in range(3)])
    thread.start()
    thread.join()  # the loop is held meanwhile: all three are queued before it turns
    await poll(lambda: list(ran), lambda now: now == [0, 1, 2], what="the three calls, in order")
    assert len(wake_ups) == 1
    await asyncio.to_thread(main.call_soon, functools.partial(ran.append, 3))
    await poll(lambda: list(ran), lambda now: now == [0, 1, 2, 3], what="the fourth call")
    assert len(wake_ups) == 2  # a call after the loop's turn wakes it again


async def test_a_port_in_use_is_an_error_at_entry_and_the_thread_ends() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = set(threading.enumerate())
        with pytest.raises(OSError):
            async with front_door(web.Application(), "127.0.0.1", port):
                pass
        assert set(threading.enumerate()) <= before


async def test_the_front_door_answers_from_its_own_thread_and_stops_on_exit() -> None:
    threads: list[str] = []
    before = set(threading.enumerate())

    async def who(request: web.Request) -> web.Response:
        threads.append(threading.current_thread().name)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", who)
    async with front_door(app, "127.0.0.1", 0) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and threads == ["gpuctl-bot-front-door"]
    assert set(threading.enumerate()) <= before  # its thread has ended
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=5):
        pytest.fail("the front door still listens after exit")
