"""The status bar shows a stopped source first, in red, for as long as it is stopped (not as a toast)."""

from __future__ import annotations

from datetime import timedelta

from gpuctl.model import SourceFailure, Update, WatchHealth
from gpuctl.query.filter import Filter
from gpuctl.query.fleet import FleetIndex
from gpuctl.render.format import duration
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.status_bar import StatusBar, pending_retry, status_text
from tests.tui.conftest import wait_applied
from tests.tui.factory import T0, build_snapshot, bump, first_update


def stopped(update: Update, source: str = "demo") -> Update:
    """The same update, as a store reports it once `source` (here: the watch and metrics source) stopped."""
    snap = update.snapshot
    message = f"the {source} source stopped: 'name' (KeyError)"
    return update.model_copy(update={"snapshot": snap.model_copy(update={
        "failures": (SourceFailure(source=source, error="'name' (KeyError)", since=T0 - timedelta(seconds=30)),),
        "watch": snap.watch.model_copy(update={"connected": False, "error": message}),
        "metrics": snap.metrics.model_copy(update={"stale": True, "error": message}),
    })})


def test_a_stopped_source_comes_first_in_red_and_its_badges_say_stopped() -> None:
    snap = stopped(first_update(build_snapshot(1))).snapshot
    text = status_text(snap, context=None, flt=Filter.parse("pool:l4"), feed_error=None)
    plain = text.plain
    assert plain.startswith(" demo  ✕ demo STOPPED 11:59:30: 'name' (KeyError)  · filter: pool:l4")
    badge = next(span for span in text.spans if plain[span.start : span.end].startswith(" ✕ demo STOPPED"))
    assert "red" in str(badge.style)
    assert "watch ✕ STOPPED" in plain and "metrics STOPPED" in plain
    assert "reconnecting" not in plain and "retry" not in plain and "STALE" not in plain
    assert not pending_retry(snap)  # nothing will retry it: no countdown


def test_objects_left_out_are_counted() -> None:
    snap = build_snapshot(1)
    snap = snap.model_copy(update={"watch": snap.watch.model_copy(update={"objects_skipped": 3})})
    assert "watch ● 3 unreadable" in status_text(snap, context=None, flt=Filter.parse(""), feed_error=None).plain


async def test_the_stopped_badge_stays_through_later_updates() -> None:
    first = stopped(first_update(build_snapshot(1)))
    feed = QueueFeed([first])
    app = GpuctlApp(feed)
    async with app.run_test(size=(200, 30)) as pilot:
        await wait_applied(pilot)
        assert "✕ demo STOPPED" in str(app.query_one(StatusBar).render())
        feed.push(stopped(bump(first.snapshot)))
        await wait_applied(pilot, 2)
        assert "✕ demo STOPPED" in str(app.query_one(StatusBar).render())


def test_counts_handed_in_say_what_counting_says() -> None:
    snap = build_snapshot(2)
    index = FleetIndex(snap)
    counted = status_text(snap, context=None, flt=Filter(), feed_error=None).plain
    assert status_text(snap, context=None, flt=Filter(), feed_error=None, held=(index.allocated, index.idle)).plain == counted
    assert f"{index.allocated} alloc" in counted and f"{index.idle} idle" in counted


def test_a_refresh_that_lost_most_gpus_is_partial_not_fresh() -> None:
    snap = build_snapshot(1)
    metrics = snap.metrics.model_copy(update={"stale": False, "gpus_reported": 0, "gpus_missing": 12, "missing_since": T0})
    text = status_text(snap.model_copy(update={"metrics": metrics}), context=None, flt=Filter(), feed_error=None)
    assert f"metrics PARTIAL {duration(metrics.age_s)}, 12 GPUs missing since {T0:%H:%M:%S}" in text.plain
    partial = next(span for span in text.spans if text.plain[span.start:span.end].startswith("metrics"))
    assert "yellow" in str(partial.style)  # not the green of a fresh feed
    stale = metrics.model_copy(update={"stale": True, "error": "timeout"})
    text = status_text(snap.model_copy(update={"metrics": stale}), context=None, flt=Filter(), feed_error=None)
    assert "metrics STALE" in text.plain and "12 GPUs missing since" in text.plain


def test_readings_whose_freshness_went_unchecked_are_unconfirmed_not_fresh() -> None:
    snap = build_snapshot(1)
    reason = "freshness check failed: Prometheus did not answer in time (query timed out in query execution)"
    metrics = snap.metrics.model_copy(update={"stale": False, "unconfirmed": reason})
    text = status_text(snap.model_copy(update={"metrics": metrics}), context=None, flt=Filter(), feed_error=None)
    assert f"metrics UNCONFIRMED {duration(metrics.age_s)} ({reason})" in text.plain
    badge = next(span for span in text.spans if text.plain[span.start:span.end].startswith("metrics"))
    assert "yellow" in str(badge.style)  # not the green of a fresh feed


def test_idle_counts_say_when_history_has_not_answered_or_failed() -> None:
    snap = build_snapshot(1)
    assert "history" not in status_text(snap, context=None, flt=Filter(), feed_error=None).plain
    pending = snap.metrics.model_copy(update={"history_pending": True})
    text = status_text(snap.model_copy(update={"metrics": pending}), context=None, flt=Filter(), feed_error=None).plain
    assert " idle (history pending) · " in text
    failed = snap.metrics.model_copy(update={"history_error": "Prometheus did not answer in time", "history_retry_at": T0})
    text = status_text(snap.model_copy(update={"metrics": failed}), context=None, flt=Filter(), feed_error=None).plain
    assert " idle (history failed) · " in text


def test_local_readings_without_a_cluster_say_no_cluster_not_reconnecting() -> None:
    """`gpuctl top --local` on a GPU box (seen on an H200): nothing to watch, so nothing to reconnect to."""
    snap = build_snapshot(1)
    snap = snap.model_copy(update={"watch": WatchHealth(source="none"), "nodes": ()})
    plain = status_text(snap, context="local", flt=Filter(), feed_error=None).plain
    assert "no cluster" in plain and "reconnecting" not in plain and "watch" not in plain
