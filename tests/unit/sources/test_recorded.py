"""When gpuctl reads its recording rules instead of the subqueries: recorded.choose on rules API answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpuctl.sources import queries, recorded
from gpuctl.sources.history import split_recorded
from gpuctl.sources.selector import parse_selector

NOW = datetime(2026, 12, 1, 1, 0, 0, tzinfo=UTC)


def rule(name: str, *, ago_s: float = 10, health: str = "ok", error: str = "", **labels: str) -> dict[str, Any]:
    at = (NOW - timedelta(seconds=ago_s)).isoformat().replace("+00:00", "Z")
    return {"name": name, "query": "…", "labels": labels, "health": health, "lastError": error, "type": "recording",
            "lastEvaluation": at, "evaluationTime": 0.01}


def group(*rules: dict[str, Any], interval: float = 30, name: str = recorded.GROUP) -> dict[str, Any]:
    return {"name": name, "file": "/etc/prometheus/gpuctl-rules.yaml", "rules": list(rules), "interval": interval}


def shipped(**changes: Any) -> list[dict[str, Any]]:
    busy = {"threshold": "5", **changes.pop("busy_labels", {})}
    present = {"max_gap_seconds": "240", **changes.pop("present_labels", {})}
    return [group(rule(queries.LAST_BUSY_RECORD, **busy), rule(queries.PRESENT_SINCE_RECORD, **present), **changes)]


def choose(groups: Any, *, threshold_pct: float = 5.0, grace_s: float = 300.0) -> recorded.Recorded | str:
    return recorded.choose(groups, threshold_pct=threshold_pct, grace_s=grace_s, now=NOW)


def test_the_shipped_rules_running_current_are_read() -> None:
    chosen = choose(shipped())
    assert chosen == recorded.Recorded(interval_s=30, last_evaluation=NOW - timedelta(seconds=10))


@pytest.mark.parametrize(
    ("groups", "options", "why"),
    [
        ([], {}, "not loaded (no gpuctl:gpu_last_busy_timestamp_seconds)"),
        (None, {}, "not loaded"),
        ([group(rule(queries.LAST_BUSY_RECORD, threshold="5"))], {}, "no gpuctl:gpu_present_since_timestamp_seconds"),
        (shipped(), {"threshold_pct": 10.0}, "record threshold 5 %, not gpuctl's 10 %"),
        (shipped(), {"grace_s": 120.0}, "allows gaps of 240 s, over gpuctl's grace period of 120 s"),
        (shipped(interval=120), {}, "runs every 120 s; its windows need 60 s or less"),
    ],
)
def test_gpuctl_falls_back_and_says_why(groups: Any, options: dict[str, float], why: str) -> None:
    chosen = choose(groups, **options)
    assert isinstance(chosen, str) and why in chosen


def test_rules_not_evaluated_lately_or_failing_are_not_read() -> None:
    stale = [group(rule(queries.LAST_BUSY_RECORD, threshold="5", ago_s=61), rule(queries.PRESENT_SINCE_RECORD, max_gap_seconds="240"))]
    assert choose(stale) == "recording rule gpuctl:gpu_last_busy_timestamp_seconds last evaluated 61 s ago: not current"
    never = shipped()
    never[0]["rules"][1]["lastEvaluation"] = "0001-01-01T00:00:00Z"  # loaded, not run yet: Go's zero time
    assert choose(never) == "recording rule gpuctl:gpu_present_since_timestamp_seconds last evaluated never: not current"
    failing = shipped()
    failing[0]["rules"][1] |= {"health": "err", "lastError": "vector contains metrics with the same labelset after applying rule labels"}
    assert choose(failing) == (
        "recording rule gpuctl:gpu_present_since_timestamp_seconds is err: vector contains metrics with the same labelset after"
        " applying rule labels"
    )


def test_of_several_thresholds_gpuctls_is_read() -> None:
    groups = [*shipped(), group(rule(queries.LAST_BUSY_RECORD, threshold="10", ago_s=5), name="gpuctl-history-10")]
    assert isinstance(choose(groups, threshold_pct=10.0), recorded.Recorded)
    assert isinstance(choose(groups, threshold_pct=5.0), recorded.Recorded)
    assert choose(groups, threshold_pct=2.5) == "recording rules record threshold 10, 5 %, not gpuctl's 2.5 %"


def test_the_rules_apis_nanoseconds_and_other_zones_are_read() -> None:
    groups = shipped()
    groups[0]["rules"][0]["lastEvaluation"] = "2026-12-01T01:59:50.123456789+01:00"
    groups[0]["rules"][1]["lastEvaluation"] = "2026-12-01T00:59:59Z"
    assert choose(groups) == recorded.Recorded(interval_s=30, last_evaluation=NOW - timedelta(seconds=9.876544))


def test_the_recorded_reads_are_scoped_by_the_selector_and_keep_only_the_history_labels() -> None:
    sel = parse_selector('cluster="prod-a"')
    q = queries.recorded_history(5.0, 90, sel)
    # every utilisation series read is scoped (the recorded series have no cluster label to scope)
    assert q.count('cluster="prod-a"') == q.count("DCGM_FI_DEV_GPU_UTIL{") + q.count("DCGM_FI_PROF_GR_ENGINE_ACTIVE{") + q.count(
        "DCGM_FI_DEV_GPU_UTIL_RATIO{") + q.count("DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO{") == 4  # each name once, for both records
    assert q.startswith(f"max by (__name__, {queries.NAME_LABEL}, {', '.join(queries.HISTORY_LABELS)}) (")
    assert ('{__name__=~"gpuctl:gpu_last_busy_timestamp_seconds|gpuctl:gpu_present_since_timestamp_seconds",'
            'threshold=~"5|"}') in q  # fmt: skip
    # under the threshold throughout the live window: a burst since the rules' last evaluation is seen
    assert 'max_over_time(DCGM_FI_DEV_GPU_UTIL{cluster="prod-a",GPU_I_ID=""}[90s]) < 5' in q


def test_the_recorded_answer_splits_into_the_two_records_and_leaves_out_the_rest() -> None:
    def series(name: object, gpu: str) -> dict[str, object]:
        return {"metric": {"__name__": name, "Hostname": "n", "gpu": gpu}, "value": [1.0, "2"]}

    busy, present, other = series(queries.LAST_BUSY_RECORD, "0"), series(queries.PRESENT_SINCE_RECORD, "1"), series("x", "2")
    assert split_recorded([present, other, busy, series(None, "3"), {"metric": "junk"}, "junk"]) == ([busy], [present])
    assert split_recorded([]) == ([], [])


def short_reach(oldest_ago_s: float | None) -> str | None:
    oldest = None if oldest_ago_s is None else NOW.timestamp() - oldest_ago_s
    return recorded.short_reach(oldest, now=NOW, lookback_s=2040.0)


def test_rules_that_began_within_the_look_back_may_prove_less_than_the_subqueries() -> None:
    assert short_reach(600) == "recording rules reach back 600 s, less than the history's look-back of 2040 s"
    assert short_reach(None) == "recording rules reach back nothing yet, less than the history's look-back of 2040 s"
    assert short_reach(2040) is None


def test_whether_prometheus_held_samples_is_one_count_per_name_where_the_history_reads_it() -> None:
    q = queries.samples_in_window(300, parse_selector('cluster="prod-a"'))
    assert q.split(" or ") == [
        'count(present_over_time(DCGM_FI_DEV_GPU_UTIL{cluster="prod-a",GPU_I_ID=""}[300s]))',
        'count(present_over_time(DCGM_FI_DEV_GPU_UTIL_RATIO{cluster="prod-a",GPU_I_ID=""}[300s]))',
        'count(present_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{cluster="prod-a",GPU_I_ID!=""}[300s]))',
        'count(present_over_time(DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO{cluster="prod-a",GPU_I_ID!=""}[300s]))',
    ]
