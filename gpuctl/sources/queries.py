"""Every PromQL query the Prometheus source sends, built in one place and scoped by the metrics selector.

Why the shapes are what they are:

* dcgm-exporter serves DCGM_FI_DEV_GPU_UTIL and DCGM_FI_PROF_GR_ENGINE_ACTIVE
  (and, mid-upgrade, their 4.9 names) for the same GPU with the same labels.
  A name selector (`{__name__=~"A|B"}`) keeps each series' name, so both
  survive and `merge_readings` picks by priority. Functions (`timestamp`,
  `changes`, `max_over_time`) drop the name: over both names at once they
  fail with 422 "vector cannot contain metrics with the same labelset", and
  `a or b` silently keeps only `a`'s series. So every function is applied to
  one name at a time, and the name is put back as the `gpuctl_metric` label
  (`label_replace`) before the names are combined with `or` (where the answer
  needs no name, as the freshness query's, an aggregation per name does it).
* Queries are per metric name, never per GPU: the count is fixed whatever the
  fleet size (see `REFRESH_QUERIES`).
* Cost on a shared Prometheus: a subquery re-evaluates its inner expression at
  every step, so the history's subqueries each read one name (tagging and `or`
  happen once, outside them), on the devices where that name is the reading
  gpuctl uses, at a step the idle window needs (gpuctl.sources.history). Every
  answer keeps only the labels gpuctl parses (`max by`): what Prometheus
  encodes and gpuctl decodes shrinks with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gpuctl.sources.dcgm_fields import LABELS_READ, METRICS, MIG_UTIL_FIRST, POD_LABELS_READ, MetricName, Quantity, names_for
from gpuctl.sources.selector import NO_SELECTOR, Selector

NAME_LABEL = "gpuctl_metric"  # carries the metric name through functions that drop it
# Labels that name a GPU (see dcgm_fields.parse_identity's key): what the freshness query keeps.
IDENTITY_LABELS = ("Hostname", "hostname", "gpu", "GPU_I_ID")
# Readings that move on every live GPU, busy or idle: power (in mW steps) and temperature.
# Both are dcgm-exporter default counters; an exporter without either makes every GPU stale.
# (Utilisation and memory sit still on an idle GPU, and would triple the query's cost.)
LIVENESS: tuple[Quantity, ...] = (Quantity.POWER, Quantity.TEMP)
# Every label dcgm_fields parses (identity, pod, scrape target), nothing else: the history's answers and
# the detailed quantities' keep these (at 12,500 GPUs the exporter's pci_bus_id, device, driver version and
# Prometheus's job were a quarter of an answer's bytes).
SERIES_LABELS: tuple[str, ...] = LABELS_READ
# The quantities whose answers carry a GPU's details and holder: utilisation (what idleness is judged on) and
# used memory (every GPU and MIG instance reports it by default). merge_readings takes identity and pod from
# any reading of a GPU, so the other quantities' answers keep only the GPU's key: a third of the bytes.
DETAILED: tuple[Quantity, ...] = (Quantity.UTIL, Quantity.FB_USED)
# What the history's answers keep: the GPU's key and its holder (gpuctl.sources.history joins on nothing else),
# about two thirds of SERIES_LABELS' bytes. Series of one GPU and holder that differed only in the labels left out
# (two scrape jobs) are one, at their latest timestamp: what the join would take of them.
HISTORY_LABELS: tuple[str, ...] = (*IDENTITY_LABELS, *POD_LABELS_READ)


def instant(quantity: Quantity, selector: Selector = NO_SELECTOR) -> str:
    """One query for a quantity on every GPU, all its names at once, each series keeping its name and the
    labels gpuctl reads of it (SERIES_LABELS for the DETAILED quantities, the GPU's key for the others).

    Unlike `a or b`, the name selector keeps every name's series: for a MIG
    instance, the graphics-engine ratio must win over a GPU_UTIL that some
    exporter versions report as a constant 0 (merge_readings picks by priority).
    An aggregation keeps `__name__` when asked to (`by (__name__, ...)`), so the names survive it;
    series of one GPU that differ only in labels left out (two scrape jobs; in the lean answers, a
    time-sliced GPU's pods) are one.
    """
    labels = SERIES_LABELS if quantity in DETAILED else IDENTITY_LABELS
    return _kept(series(quantity, selector), "__name__", *labels)


def series(quantity: Quantity, selector: Selector = NO_SELECTOR) -> str:
    """The raw series of a quantity: every name, every label (what `instant` aggregates)."""
    scope = f",{selector.promql()}" if selector else ""
    return '{__name__=~"' + "|".join(names_for(quantity)) + '"' + scope + "}"


def freshness(window_s: float, selector: Selector = NO_SELECTOR) -> str:
    """The GPUs whose power or temperature readings changed in the window, each with its count of changes (> 0).

    A GPU missing from the answer is stale: it has no sample in the window (its
    target is no longer scraped, though an instant query still returns its last
    values for Prometheus's 5-minute lookback), or it serves frozen values (a
    hung DCGM behind a live exporter). Per name, the changes are summed per GPU
    (the sum drops the name, so two names never meet in one function) and only
    counts over 0 kept; the names are combined with `or`, whose operands carry
    the GPU's key alone, so a GPU moving in any name is in the answer once.
    Summed per name and filtered, Prometheus spends about half the time and a
    third less memory on it than on tagging every series with its name and
    summing their union (BENCHMARKS.md §9), and the answer holds only the GPUs
    that move.
    """
    window, key = duration(window_s), ", ".join(IDENTITY_LABELS)
    names = [m for q in LIVENESS for m in METRICS if m.quantity is q]
    return " or ".join(f"sum by ({key}) (changes({m.name}{_matchers(selector)}[{window}])) > 0" for m in names)


def last_busy(threshold_pct: float, lookback_s: float, step_s: float, selector: Selector = NO_SELECTOR) -> str:
    """Per (GPU, pod, utilisation name), for series under the threshold now: the end of the last step in
    which any sample was at or over it.

    `max_over_time(name[step])` at each step sees every raw sample once, so a
    busy burst between two steps is not missed; the result is at most one step
    late, which makes idle streaks shorter, never longer. The steps of a
    subquery end before "now": the part after the last one is covered by the
    same expression evaluated now, which wins when present (`now or history`).
    Only series under the threshold now are answered (`and` `_idle_now`, outside the subquery: inside it,
    the filter cost every step more than it saved on an idle fleet): gpuctl asks the history only about
    GPUs under it, and on a busy fleet the answer shrinks to the idle few.
    """
    step = duration(step_s)

    def latest_busy(m: MetricName, sel: str) -> str:
        busy = f"max_over_time({m.name}{sel}[{step}]) >= {threshold_pct / m.factor:g}"
        latest = f"timestamp({busy}) or max_over_time(timestamp({busy})[{duration(lookback_s)}:{step}])"
        return f"({latest}) and {_idle_now(m, sel, threshold_pct)}"

    return _kept(_union(_util_names(), latest_busy, selector, _where_chosen), NAME_LABEL, *HISTORY_LABELS)


def present_since(
    threshold_pct: float, lookback_s: float, step_s: float, gap_s: float, selector: Selector = NO_SELECTOR
) -> str:
    """Per (GPU, pod, utilisation name), for series under the threshold now: since when its samples have
    come without a gap over `gap_s`.

    A run of samples starts where one arrives with none in the `gap_s` before
    it: `present(t) unless present(t - step)`, with `present` = a sample in
    the last `gap_s - step` (so a gap a little shorter than `gap_s` may count
    too, never a longer one missed). The latest such start, at most one step
    late; as in last_busy, the part after the subquery's last step is covered
    by evaluating now. A series with no run start in the look-back that was
    present at its beginning has come without a gap since then: the answer is
    the look-back's start (one instant read back there, not a third subquery).
    A series absent from the answer has no history: never idle by it (as one busy now: see last_busy).
    """
    step, window, span = duration(step_s), duration(max(step_s, gap_s - step_s)), duration(round(lookback_s))

    def run_start(m: MetricName, sel: str) -> str:
        present = f"last_over_time({m.name}{sel}[{window}]"  # any sample in the window; the cheapest such function
        starts = f"{present}) unless {present} offset {step})"
        seen_at_start = f"timestamp({present} offset {span})) - {round(lookback_s)}"
        latest = f"timestamp({starts}) or max_over_time(timestamp({starts})[{span}:{step}]) or {seen_at_start}"
        return f"({latest}) and {_idle_now(m, sel, threshold_pct)}"

    return _kept(_union(_util_names(), run_start, selector, _where_chosen), NAME_LABEL, *HISTORY_LABELS)


def duration(seconds: float) -> str:
    """A PromQL duration in whole seconds (at least 1s)."""
    return f"{max(1, round(seconds))}s"


def _util_names() -> list[MetricName]:
    return [m for m in METRICS if m.quantity is Quantity.UTIL]


def _idle_now(m: MetricName, sel: str, threshold_pct: float) -> str:
    """`m`'s series under the threshold at the query's time (used outside subqueries only)."""
    return f"{m.name}{sel} < {threshold_pct / m.factor:g}"


def _where_chosen(m: MetricName) -> str:
    """The devices whose utilisation merge_readings takes from `m`: the profiling ratio on MIG
    instances, GPU_UTIL on whole GPUs (a missing label matches "")."""
    return 'GPU_I_ID!=""' if m.name in MIG_UTIL_FIRST else 'GPU_I_ID=""'


def _union(
    names: Sequence[MetricName],
    expr: Callable[[MetricName, str], str],
    selector: Selector,
    scope: Callable[[MetricName], str] = lambda m: "",
) -> str:
    """`expr` for each name (its series scoped by `selector` and `scope(name)`), tagged with its name,
    combined with `or` (the tags keep every series)."""

    return " or ".join(
        f'label_replace({expr(m, _matchers(selector, scope(m)))}, "{NAME_LABEL}", "{m.name}", "__name__", ".*")'
        for m in names
    )


def _matchers(selector: Selector, scope: str = "") -> str:
    """The label matchers (`{...}`) of `selector` and `scope`; empty when there are none."""
    matchers = ",".join(x for x in (selector.promql(), scope) if x)
    return f"{{{matchers}}}" if matchers else ""


def _kept(expr: str, *labels: str) -> str:
    """Only `labels` of `expr`'s series (`max by`): the answer carries what gpuctl reads and no more, and
    series that differed only in other labels (a driver version, the scrape job) are one."""
    return f"max by ({', '.join(labels)}) ({expr})"
