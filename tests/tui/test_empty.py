from gpuctl.model import MetricsHealth, Snapshot, SourceFailure, WatchHealth
from gpuctl.query.filter import Filter
from gpuctl.tui.empty import empty_reason, metrics_hint
from tests.tui.factory import T0, build_snapshot


def unreachable() -> Snapshot:
    return Snapshot(
        taken_at=T0,
        idle_threshold_pct=5,
        idle_window_s=1800,
        metrics=MetricsHealth(source="none"),
        watch=WatchHealth(source="kubernetes", connected=False, error="connection refused"),
    )


def test_empty_views_say_why() -> None:
    assert "Waiting" in empty_reason(None, Filter(), "GPUs")
    assert "connection refused" in empty_reason(unreachable(), Filter(), "GPUs")
    assert "match the filter 'ns:x'" in empty_reason(build_snapshot(1), Filter.parse("ns:x"), "GPU pods")
    connected_but_empty = unreachable().model_copy(update={"watch": WatchHealth(source="kubernetes", connected=True)})
    assert empty_reason(connected_but_empty, Filter(), "GPU pods") == "No GPU pods in this cluster."


def test_metrics_hint_explains_missing_numbers() -> None:
    assert "--prometheus" in (metrics_hint(unreachable()) or "")
    assert "stale" in (metrics_hint(build_snapshot(1, metrics_stale=True)) or "")
    assert metrics_hint(build_snapshot(1)) is None


def test_a_stopped_source_is_not_said_to_retry() -> None:
    failure = SourceFailure(source="kubernetes", error="'name' (KeyError)", since=T0)
    dead = unreachable().model_copy(update={
        "failures": (failure,),
        "watch": WatchHealth(source="kubernetes", connected=False, error="the kubernetes source stopped: 'name' (KeyError)"),
    })
    reason = empty_reason(dead, Filter(), "GPUs")
    assert reason.startswith("the kubernetes source stopped: 'name' (KeyError). Nothing retries it") and "Retrying" not in reason
    snap = build_snapshot(1, metrics_stale=True)
    snap = snap.model_copy(update={"failures": (failure.model_copy(update={"source": "demo"}),)})
    assert (metrics_hint(snap) or "").startswith("metrics stopped (")
