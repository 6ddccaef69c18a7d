"""Stale GPUs in the heatmap and the details panel: greyed with '~', and named stale, not idle or busy."""

from __future__ import annotations

from gpuctl.query import FleetIndex
from gpuctl.tui.gpu_details import render_details
from gpuctl.tui.heatmap import cell_look
from gpuctl.tui.history import UtilHistory
from gpuctl.tui.palette import NO_DATA_BG, Metric

from .factory import build_snapshot


def test_a_stale_gpu_is_drawn_and_described_as_stale() -> None:
    snap = build_snapshot(1)
    held = next(g for g in snap.gpus if g.pod is not None and g.util_pct is not None and not g.xid)
    stale = held.model_copy(update={"stale": True, "idle": False, "busy": False, "idle_for_s": None})
    assert cell_look(held, Metric.UTIL)[1] != NO_DATA_BG
    assert cell_look(stale, Metric.UTIL) == ("~", NO_DATA_BG)

    snap = snap.model_copy(update={"gpus": tuple(stale if g.key == held.key else g for g in snap.gpus)})
    text = render_details(FleetIndex(snap), UtilHistory(4), held.key, 120).plain
    assert "STALE" in text and "IDLE for" not in text and "quiet" not in text
