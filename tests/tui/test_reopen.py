"""Reopening the feed: `x` switches kubeconfig context, `+`/`-` step the refresh interval, and
the status bar counts down to the next retry while disconnected.

The app is given settings and a feed factory (settings -> feed): here a factory
that records what it was asked for and hands out queue feeds, or the real
cluster feed for a context whose API server nobody listens on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import OptionList

from gpuctl.config import Settings
from gpuctl.model import Update
from gpuctl.tui.app import GpuctlApp, step_interval
from gpuctl.tui.context_screen import ContextScreen
from gpuctl.tui.feed import QueueFeed, UpdateFeed
from gpuctl.tui.heatmap import Heatmap
from gpuctl.tui.node_screen import NodeScreen
from gpuctl.tui.row_table import RowTable
from gpuctl.tui.service_feed import cluster_feed
from gpuctl.tui.status_bar import StatusBar
from tests.tui.conftest import until, wait_applied
from tests.tui.factory import build_snapshot, first_update

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: someone
  user: {token: not-a-real-token}
contexts:
- name: alpha
  context: {cluster: nowhere, user: someone}
- name: beta
  context: {cluster: nowhere, user: someone}
- name: dead
  context: {cluster: nowhere, user: someone}
- name: broken
  context: {cluster: missing, user: someone}
current-context: alpha
"""


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no ~/.config/gpuctl/config.yaml leaks in


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


def settings(**kw: object) -> Settings:
    return Settings(config_file=None, **kw)  # type: ignore[arg-type]


class Feeds:
    """A feed factory: one queue feed per settings it is asked for, and a log of opens and closes."""

    def __init__(self, first: list[Update]) -> None:
        self.first = first
        self.asked: list[Settings] = []
        self.queues: list[QueueFeed] = []
        self.log: list[str] = []

    def __call__(self, s: Settings) -> UpdateFeed:
        self.asked.append(s)
        queue = QueueFeed(self.first if len(self.asked) == 1 else ())
        self.queues.append(queue)
        return self._tracked(queue, s.context or f"every {s.refresh_s:g}s")

    async def _tracked(self, queue: QueueFeed, name: str) -> AsyncIterator[Update]:
        self.log.append(f"open {name}")
        try:
            async for update in queue:
                yield update
        finally:
            self.log.append(f"close {name}")


def status(app: GpuctlApp) -> str:
    return str(app.query_one(StatusBar).render())


def toasts(app: GpuctlApp) -> list[str]:
    return [n.message for n in app._notifications]  # what notify() raised (run_test does not draw toasts)


# -- context switch ------------------------------------------------------------------------------


async def test_x_lists_the_contexts_and_choosing_one_reconnects(kubeconfig: Path) -> None:
    feeds = Feeds([first_update(build_snapshot(1))])
    app = GpuctlApp(settings=settings(kubeconfig=kubeconfig), open_feed=feeds)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen), "the context list")
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt).strip() for i in range(options.option_count)]
        assert labels == ["● alpha  (current)", "beta", "dead", "broken"]
        assert options.highlighted == 0  # on the current one

        await pilot.press("down", "enter")
        await until(pilot, lambda: "open beta" in feeds.log, "the beta feed opened")
        assert feeds.asked[-1].context == "beta" and feeds.asked[-1].kubeconfig == kubeconfig
        assert feeds.log == ["open every 15s", "close every 15s", "open beta"]  # the old cluster closed first
        assert not isinstance(app.screen, ContextScreen)
        bar = status(app)
        assert bar.startswith(" beta ") and "connecting to beta…" in bar and "nodes" not in bar
        assert "Connecting to the cluster" in str(app.query_one(Heatmap).render_line(0).text)

        beta = build_snapshot(2, seed=3)
        feeds.queues[-1].push(first_update(beta.model_copy(update={"watch": beta.watch.model_copy(update={"context": "beta"})})))
        await until(pilot, lambda: "6 nodes" in status(app), "beta's picture")
        assert "connecting" not in status(app) and status(app).startswith(" beta ")

        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen), "the context list again")
        options = app.screen.query_one(OptionList)
        assert "(current)" in str(options.get_option_at_index(1).prompt)  # beta now
        await pilot.press("escape")
        assert not isinstance(app.screen, ContextScreen) and len(feeds.asked) == 2  # cancel changes nothing


async def test_switching_to_an_unreachable_context_shows_the_calm_disconnected_state(kubeconfig: Path) -> None:
    feeds = Feeds([first_update(build_snapshot(1))])

    def factory(s: Settings) -> UpdateFeed:
        return cluster_feed(s) if s.context == "dead" else feeds(s)  # the real thing for the dead one

    app = GpuctlApp(settings=settings(kubeconfig=kubeconfig), open_feed=factory)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("2")  # a table view this time
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen), "the context list")
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: "retry in" in status(app), "a retry countdown")
        bar = status(app)
        assert bar.startswith(" dead ") and "watch ○ reconnecting, retry in" in bar
        assert app.is_running and app.feed_error is None
        assert feeds.log == ["open every 15s", "close every 15s"]
        nodes = app.query_one("#nodes-table", RowTable)
        await until(pilot, lambda: "cannot connect" in nodes.empty_text, "the empty table to say why")


async def test_a_context_that_cannot_be_loaded_is_a_toast_not_an_exit(kubeconfig: Path) -> None:
    feeds = Feeds([first_update(build_snapshot(1))])

    def factory(s: Settings) -> UpdateFeed:
        return cluster_feed(s) if s.context == "broken" else feeds(s)

    app = GpuctlApp(settings=settings(kubeconfig=kubeconfig), open_feed=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        await pilot.press("enter")  # a node screen: it belongs to the old cluster and closes
        await until(pilot, lambda: isinstance(app.screen, NodeScreen), "the node screen")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen), "the context list")
        await pilot.press("end", "enter")
        await until(pilot, lambda: app.feed_error is not None, "the failure")
        assert app.is_running and app.fatal_error is None
        assert not isinstance(app.screen, NodeScreen)
        assert any("broken" in t and "missing" in t for t in toasts(app))
        assert status(app).startswith(" broken ") and "data feed stopped" in status(app)


@pytest.mark.parametrize("mode", ["demo", "local"])
async def test_x_in_demo_and_local_explains_there_is_no_kubeconfig(mode: str) -> None:
    feeds = Feeds([first_update(build_snapshot(1))])
    app = GpuctlApp(settings=settings(**{mode: True}), open_feed=feeds)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_applied(pilot)
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, ContextScreen)
        assert toasts(app) == [f"--{mode} reads no kubeconfig, so there is no context to switch to."]
        assert len(feeds.asked) == 1


async def test_reopen_keys_without_settings_explain_themselves() -> None:
    app = GpuctlApp(QueueFeed([first_update(build_snapshot(1))]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_applied(pilot)
        await pilot.press("x", "plus")
        await pilot.pause()
        assert len(toasts(app)) == 2 and all("nothing to reconnect" in t for t in toasts(app))
        assert "every" not in status(app)


async def test_a_missing_kubeconfig_is_a_toast(tmp_path: Path) -> None:
    feeds = Feeds([first_update(build_snapshot(1))])
    app = GpuctlApp(settings=settings(kubeconfig=tmp_path / "nope"), open_feed=feeds)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_applied(pilot)
        await pilot.press("x")
        await until(pilot, lambda: bool(toasts(app)), "a toast")
        assert "does not exist" in toasts(app)[0] and not isinstance(app.screen, ContextScreen)


# -- refresh interval ----------------------------------------------------------------------------


def test_the_ladder() -> None:
    assert step_interval(15, 1) == 30 and step_interval(15, -1) == 10  # the default sits between rungs
    assert step_interval(2, 1) == 5 and step_interval(2, -1) == 1
    assert step_interval(60, 1) is None and step_interval(1, -1) is None
    assert step_interval(600, -1) == 60 and step_interval(0.5, 1) == 1


async def test_plus_and_minus_step_the_refresh_interval_and_keep_the_picture() -> None:
    feeds = Feeds([first_update(build_snapshot(1))])
    app = GpuctlApp(settings=settings(demo=True), open_feed=feeds)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_applied(pilot)
        assert " every 2s ·" in status(app)
        await pilot.press("plus")
        await until(pilot, lambda: "open every 5s" in feeds.log, "the 5 s feed")
        assert feeds.log == ["open every 2s", "close every 2s", "open every 5s"]
        assert feeds.asked[-1].refresh_s == 5 and feeds.asked[-1].demo
        bar = status(app)
        assert " every 5s ·" in bar and "reconnecting…" in bar
        assert "3 nodes" in bar  # the same cluster: the last picture stays while it reconnects
        assert app.query_one(Heatmap).layout_.lines  # and so does the heatmap

        feeds.queues[-1].push(first_update(build_snapshot(1)))
        await until(pilot, lambda: "reconnecting" not in status(app), "the reopened feed's first update")

        await pilot.press("minus", "minus")
        await until(pilot, lambda: len(feeds.asked) == 4, "two more feeds")
        assert [s.refresh_s for s in feeds.asked] == [2, 5, 2, 1]
        await pilot.press("minus")
        await pilot.pause()
        assert len(feeds.asked) == 4 and toasts(app)[-1] == "1s is the shortest refresh interval."
        assert " every 1s ·" in status(app)
        await pilot.press("equals_sign")  # = is + without shift
        await until(pilot, lambda: len(feeds.asked) == 5, "one more feed")
        assert feeds.asked[-1].refresh_s == 2


# -- retry countdown -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def disconnected(retry_in_s: float) -> Update:
    snap = build_snapshot(1, watch_connected=False, metrics_stale=True)
    at = snap.taken_at + timedelta(seconds=retry_in_s)
    return first_update(snap.model_copy(update={
        "watch": snap.watch.model_copy(update={"retry_at": at}),
        "metrics": snap.metrics.model_copy(update={"retry_at": at + timedelta(seconds=20)}),
    }))


async def test_the_status_bar_counts_down_to_the_next_retry_and_stops_when_connected() -> None:
    clock = Clock()
    feed = QueueFeed([disconnected(10)])
    app = GpuctlApp(feed, monotonic=clock)
    async with app.run_test(size=(200, 30)) as pilot:
        await wait_applied(pilot)
        bar = status(app)
        assert "watch ○ reconnecting, retry in 10s" in bar
        assert "metrics STALE 3m, retry in 30s (prometheus: connection refused)" in bar
        clock.now += 7.5  # the bar redraws itself once a second, without a new snapshot
        await until(pilot, lambda: "retry in 3s" in status(app), "the countdown to move")
        assert "metrics STALE 3m, retry in 23s" in status(app)
        clock.now += 5
        await until(pilot, lambda: "reconnecting, retrying…" in status(app), "the retry to be due")

        feed.push(first_update(build_snapshot(1)))
        await wait_applied(pilot, 2)
        assert not re.search(r"retry", status(app)) and app._ticker is None  # nothing left to count
