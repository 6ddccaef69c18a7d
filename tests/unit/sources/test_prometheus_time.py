"""A metrics batch is stamped with Prometheus's evaluation time, read from its answers (not our clock)."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuctl.sources.prometheus import evaluation_time


def series(ts: object, value: str = "0") -> dict[str, object]:
    return {"metric": {"gpu": "0", "Hostname": "n1"}, "value": [ts, value]}


def test_the_earliest_evaluation_time_of_the_answers() -> None:
    answers = [[series(1_700_000_010.5), series(1_700_000_010.5)], [], [series(1_700_000_010.25)]]
    assert evaluation_time(answers) == datetime.fromtimestamp(1_700_000_010.25, UTC)


def test_malformed_series_are_skipped_and_empty_answers_have_no_time() -> None:
    malformed = [{"metric": {}}, {"value": []}, series(None), series("soon"), series("NaN"), series(1e20), series(float("inf"))]
    assert evaluation_time([malformed]) is None
    assert evaluation_time([]) is None and evaluation_time([[], []]) is None
    assert evaluation_time([[*malformed, series(1_700_000_000)]]) == datetime.fromtimestamp(1_700_000_000, UTC)
