from datetime import timedelta

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
