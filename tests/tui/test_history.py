from datetime import timedelta

from gpuctl.model import Snapshot
from gpuctl.tui.history import UtilHistory
from tests.tui.factory import build_snapshot, bump


def test_one_sample_per_metrics_refresh_not_per_update() -> None:
    snap = build_snapshot(1)
    h = UtilHistory(depth=5)
    assert h.record(snap)
    assert not h.record(snap.model_copy(update={"generation": 2}))  # a pod event, same metrics
    key = snap.gpus[0].key
    assert h.series(key) == [snap.gpus[0].util_pct]


def test_ring_buffer_is_bounded() -> None:
    snap = build_snapshot(1)
    h = UtilHistory(depth=3)
    for _ in range(6):
        h.record(snap)
        snap = bump(snap, every=1).snapshot
    assert all(len(h.series(g.key)) == 3 for g in snap.gpus)


def test_vanished_gpus_are_dropped() -> None:
    snap = build_snapshot(1)
    h = UtilHistory()
    h.record(snap)
    fewer = snap.model_copy(update={
        "gpus": snap.gpus[:2],
        "metrics": snap.metrics.model_copy(update={"last_success": snap.taken_at + timedelta(seconds=5)}),
    })
    h.record(fewer)
    assert len(h) == 2
    assert h.series(snap.gpus[-1].key) == []


def _refresh(snap: Snapshot, n: int, utils: dict[str, float | None]) -> Snapshot:
    """`snap` after metrics refresh `n`, with the given GPUs' utilisation."""
    return snap.model_copy(update={
        "gpus": tuple(g.model_copy(update={"util_pct": utils[g.key]}) if g.key in utils else g for g in snap.gpus),
        "metrics": snap.metrics.model_copy(update={"last_success": snap.taken_at + timedelta(seconds=n)}),
    })


def test_samples_come_back_oldest_first_after_the_ring_wraps_and_gaps_stay_gaps() -> None:
    snap = build_snapshot(1)
    key = snap.gpus[0].key
    h = UtilHistory(depth=3)
    seen: list[float | None] = [10.0, None, 30.0, 40.0, None]
    for n, util in enumerate(seen):
        h.record(_refresh(snap, n, {key: util}))
    assert h.series(key) == [30.0, 40.0, None]


def test_a_gpu_that_comes_back_starts_a_new_series_and_a_new_gpu_has_only_its_own_samples() -> None:
    snap = build_snapshot(1)
    first, last = snap.gpus[0].key, snap.gpus[-1].key
    h = UtilHistory(depth=4)
    h.record(_refresh(snap, 0, {first: 1.0, last: 2.0}))
    without = _refresh(snap, 1, {first: 3.0})
    h.record(without.model_copy(update={"gpus": without.gpus[:-1]}))
    assert h.series(last) == []
    h.record(_refresh(snap, 2, {first: 5.0, last: 6.0}))  # back: a series of its own again
    assert h.series(last) == [6.0]
    assert h.series(first) == [1.0, 3.0, 5.0]


def test_clear_forgets_every_gpu() -> None:
    snap = build_snapshot(1)
    h = UtilHistory()
    h.record(snap)
    h.clear()
    assert len(h) == 0
    assert h.series(snap.gpus[0].key) == []
    assert h.record(snap)  # the same metrics are a new sample after a clear


def test_a_sample_made_beforehand_is_the_sample_record_would_take() -> None:
    snap = build_snapshot(1)
    key = snap.gpus[0].key
    made, found = UtilHistory(depth=3), UtilHistory(depth=3)
    for n, util in enumerate([10.0, None, 30.0]):
        step = _refresh(snap, n, {key: util})
        assert made.wants(step)
        made.record(step, sample=UtilHistory.sample_of(step))
        found.record(step)
        assert not made.wants(step)  # taken: the same metrics again are no new sample
    assert made.series(key) == found.series(key) == [10.0, None, 30.0]
    assert all(made.series(g.key) == found.series(g.key) for g in snap.gpus)


def test_a_sample_converts_every_reading_as_one_slot_at_a_time_would() -> None:
    snap = build_snapshot(1)
    key = snap.gpus[0].key
    # In range (the sample converted whole), then each value that makes it convert GPU by GPU.
    for util in (12.34, 0.0, -0.004, None, float("nan"), -3.0, 655.35, 655.349, 700.0):
        step = _refresh(snap, 1, {key: util})
        h = UtilHistory(depth=2)
        h.record(step, sample=UtilHistory.sample_of(step))
        expected = None if util is None or util != util else min(max(round(util * 100), 0), 0xFFFE) / 100
        assert h.series(key) == [expected], util
        assert all(h.series(g.key) == [g.util_pct] for g in step.gpus[1:])
