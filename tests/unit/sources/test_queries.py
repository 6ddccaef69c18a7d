"""The PromQL gpuctl sends: every name of a quantity, each generation's raw unit, the selector everywhere.

Whether Prometheus accepts these queries and answers them as intended is checked
against a real Prometheus in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import re

import pytest

from gpuctl.sources import queries
from gpuctl.sources.dcgm_fields import METRICS, Quantity
from gpuctl.sources.history import HistoryPlan
from gpuctl.sources.selector import parse_selector

CLUSTER = parse_selector('cluster="prod-a"')


def test_instant_query_selects_every_name_of_a_quantity() -> None:
    assert queries.series(Quantity.FB_USED) == '{__name__=~"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_USED_BYTES"}'
    assert queries.series(Quantity.UTIL).startswith('{__name__=~"DCGM_FI_DEV_GPU_UTIL|DCGM_FI_DEV_GPU_UTIL_RATIO|')


def test_instant_queries_keep_the_name_and_only_the_labels_gpuctl_reads() -> None:
    detailed = ", ".join(("__name__", *queries.SERIES_LABELS))
    assert queries.instant(Quantity.FB_USED) == f"max by ({detailed}) ({queries.series(Quantity.FB_USED)})"
    assert queries.instant(Quantity.UTIL) == f"max by ({detailed}) ({queries.series(Quantity.UTIL)})"
    # The other quantities: the GPU's key only (identity and holder come from the detailed ones).
    key = ", ".join(("__name__", *queries.IDENTITY_LABELS))
    assert queries.instant(Quantity.TEMP, CLUSTER) == f"max by ({key}) ({queries.series(Quantity.TEMP, CLUSTER)})"


def test_the_history_answers_keep_only_the_tag_and_the_labels_gpuctl_reads() -> None:
    # The history joins on the GPU's key and its holder: no UUID, model or scrape target.
    kept = f"max by ({', '.join((queries.NAME_LABEL, *queries.HISTORY_LABELS))}) ("
    assert set(queries.HISTORY_LABELS) < set(queries.SERIES_LABELS)
    assert not {"UUID", "modelName", "instance"} & set(queries.HISTORY_LABELS)
    assert queries.last_busy(5, 1860, 60).startswith(kept)
    assert queries.present_since(5, 1860, 60, 300).startswith(kept)


def test_busy_threshold_uses_each_generations_raw_unit() -> None:
    q = queries.last_busy(5, lookback_s=1860, step_s=15)
    assert 'max_over_time(DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=""}[15s]) >= 5)' in q
    assert 'max_over_time(DCGM_FI_DEV_GPU_UTIL_RATIO{GPU_I_ID=""}[15s]) >= 0.05)' in q
    assert 'max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""}[15s]) >= 0.05)' in q


def test_functions_never_see_two_metric_names_at_once() -> None:
    # timestamp()/changes() drop the name: each name is tagged before names are combined.
    for q in (queries.last_busy(5, 1860, 15), queries.present_since(5, 1860, 15, 300)):
        assert "__name__=~" not in q
        for name in re.findall(r"(DCGM_\w+)[\[{]", q):
            assert 'label_replace(' in q and f'"{queries.NAME_LABEL}", "{name}"' in q


def test_the_freshness_query_covers_the_values_that_move_on_a_live_gpu_one_name_per_sum() -> None:
    q = queries.freshness(120)
    names = {m.name for m in METRICS if m.quantity in queries.LIVENESS}
    key = "sum by (Hostname, hostname, gpu, GPU_I_ID) "
    parts = q.split(" or ")
    # each name's changes summed per GPU on their own (the sum drops the name), only GPUs that moved kept
    assert [re.fullmatch(re.escape(key) + r"\(changes\((DCGM_\w+)\[120s\]\)\) > 0", p) is not None for p in parts] == [
        True
    ] * len(parts)
    assert {re.search(r"changes\((DCGM_\w+)", p).group(1) for p in parts} == names  # type: ignore[union-attr]
    assert "__name__=~" not in q


@pytest.mark.parametrize(
    "query",
    [
        queries.instant(Quantity.UTIL, CLUSTER),
        queries.freshness(120, CLUSTER),
        queries.last_busy(5, 1860, 15, CLUSTER),
        queries.present_since(5, 1860, 15, 300, CLUSTER),
    ],
)
def test_the_selector_scopes_every_series_a_query_reads(query: str) -> None:
    selectors = re.findall(r"(?:DCGM_\w+)?\{[^}]*\}", query)
    assert selectors and all('cluster="prod-a"' in s for s in selectors)
    # and no metric is read without them (a name in quotes is label_replace's tag, not a read)
    assert set(re.findall(r"DCGM_\w+([^\w])", query)) <= {"{", '"', "|"}


def test_history_looks_back_over_the_window_plus_a_margin_at_refresh_resolution() -> None:
    # Steps of window/15: a streak ends at most two minutes late in the default 30-minute window.
    default = HistoryPlan.for_window(idle_window_s=1800, refresh_s=15, grace_s=300)
    assert (default.step_s, default.lookback_s, default.gap_s) == (120, 1800 + 2 * 120, 300)
    # A refresh slower than window/15 sets the step.
    assert HistoryPlan.for_window(idle_window_s=300, refresh_s=30, grace_s=300).step_s == 30
    # A longer window with a fast refresh: steps of window/15, not thousands of points.
    long = HistoryPlan.for_window(idle_window_s=2100, refresh_s=2, grace_s=300)
    assert (long.step_s, long.lookback_s) == (140, 2100 + 280)
    # Presence at window/12 or half the grace period, whichever is finer, never finer than the step
    # (its answer moves only after a gap, or for a new series).
    assert (default.presence_step_s, long.presence_step_s) == (150, 150)
    assert HistoryPlan.for_window(idle_window_s=6, refresh_s=1, grace_s=300).presence_step_s == 1
    # Never coarser than half the grace period: a gap over it must fall on a step.
    assert HistoryPlan.for_window(idle_window_s=12 * 3600, refresh_s=15, grace_s=300).step_s == 150
    assert HistoryPlan.for_window(idle_window_s=3, refresh_s=0.25, grace_s=300).step_s == 1  # PromQL steps are whole seconds


def test_a_run_of_samples_starts_after_a_gap_a_step_shorter_than_the_grace_period() -> None:
    q = queries.present_since(5, 1860, 15, 300)
    util = 'DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=""}'
    assert f"last_over_time({util}[285s]) unless last_over_time({util}[285s] offset 15s)" in q
    names = [m.name for m in METRICS if m.quantity is Quantity.UTIL]
    # one subquery per name (the latest run start), else a sample where the look-back begins: its start
    assert q.count("[1860s:15s]") == len(names)
    assert q.count("[285s] offset 1860s)) - 1860") == len(names)


def test_history_reads_each_utilisation_name_only_where_it_is_the_one_chosen() -> None:
    # merge_readings: the profiling ratio on a MIG instance, GPU_UTIL on a whole GPU.
    for q in (queries.last_busy(5, 1860, 60, CLUSTER), queries.present_since(5, 1860, 150, 300, CLUSTER)):
        for name, matchers in re.findall(r"(DCGM_\w+)\{([^}]*)\}", q):
            mig = "PROF_GR_ENGINE" in name
            assert matchers == 'cluster="prod-a",' + ('GPU_I_ID!=""' if mig else 'GPU_I_ID=""'), name


def test_history_answers_only_series_under_the_threshold_now() -> None:
    # Read at the query's instant, in each generation's raw unit, on the name's own series only, once per
    # name, outside the subquery (no extra work at every step).
    busy, present = queries.last_busy(5, 1860, 60), queries.present_since(5, 1860, 60, 300)
    whole, mig = 'DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=""}', 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""}'
    assert f"[1860s:60s])) and {whole} < 5," in busy
    assert f"offset 1860s)) - 1860) and {mig} < 0.05," in present
    names = [m.name for m in METRICS if m.quantity is Quantity.UTIL]
    for q in (busy, present):
        assert len(re.findall(r"\) and DCGM_\w+\{[^}]*\} < ", q)) == len(names)
        for sub in re.findall(r"max_over_time\((timestamp\(.*?)\[1860s:60s\]\)", q):
            assert " and " not in sub


def test_functions_run_on_one_name_each_before_any_union() -> None:
    # A subquery over a union re-evaluates the union (label_replace, `or`) at every step: ~4x the cost.
    for q in (queries.last_busy(5, 1860, 60), queries.present_since(5, 1860, 60, 300)):
        for sub in re.findall(r"max_over_time\((timestamp\(.*?)\[1860s:60s\]\)", q):
            assert "label_replace" not in sub and " or " not in sub
            assert len(set(re.findall(r"DCGM_\w+", sub))) == 1
