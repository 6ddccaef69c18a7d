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
from typing import Any

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


# -- the recorded history (gpuctl.sources.recorded says when gpuctl reads it) ----------------------------------
# deploy/prometheus/gpuctl-rules.yaml's group gpuctl-history records these two every RULE_INTERVAL_S, per
# utilisation series where _where_chosen reads it, keeping only NAME_LABEL and HISTORY_LABELS.
LAST_BUSY_RECORD = "gpuctl:gpu_last_busy_timestamp_seconds"
PRESENT_SINCE_RECORD = "gpuctl:gpu_present_since_timestamp_seconds"
THRESHOLD_LABEL = "threshold"  # on LAST_BUSY_RECORD: the threshold in percent it was recorded at
MAX_GAP_LABEL = "max_gap_seconds"  # on PRESENT_SINCE_RECORD: the longest gap it may not see
# The group's interval, which the windows below are made for (a shorter one is fine too). Each evaluation costs
# Prometheus about as much CPU as one history subquery did (~1.6-3.3 s at 12,500 devices, BENCHMARKS.md section 9):
# once a minute, not every 30 s, as the streaks it feeds are judged over 30 minutes.
RULE_INTERVAL_S = 60
BUSY_WINDOW_S = 2 * RULE_INTERVAL_S  # each evaluation looks back two intervals: a late one misses no burst
PRESENT_WINDOW_S = 120  # present: a sample in the last 2 minutes (scrapes up to a minute apart, one missed)
RECENT_S = 2 * RULE_INTERVAL_S  # PRESENT_SINCE_RECORD carries on from a value at most this old (one skipped)
MAX_GAP_S = PRESENT_WINDOW_S + RECENT_S
SHIPPED_THRESHOLD_PCT = 5.0  # the shipped GpuIdleWhileAllocated alert's, and gpuctl's default idle threshold
_RECORDED_KEY = ", ".join((NAME_LABEL, *HISTORY_LABELS))


def threshold_text(threshold_pct: float) -> str:
    """The `threshold` label's value for a threshold in percent (`5`, `2.5`)."""
    return f"{threshold_pct:g}"


def recording_rules(threshold_pct: float = SHIPPED_THRESHOLD_PCT) -> list[dict[str, Any]]:
    """The gpuctl-history group's rules (record, expr, labels), as deploy/prometheus/gpuctl-rules.yaml ships them.

    PRESENT_SINCE_RECORD: the time of the first evaluation at which the series was present, carried on while
    it stays present and its previous value is at most RECENT_S old (a gap resets it). LAST_BUSY_RECORD: the
    time of the last evaluation whose BUSY_WINDOW_S held a sample at or over the threshold, else its own
    previous value, while PRESENT_SINCE_RECORD has the series (rules in a group run in order, at one time:
    it reads this evaluation's, rather than reading the samples again). Both are evaluation times, never
    earlier than the truth (streaks read from them err short), and a series that leaves takes both along."""
    on, present = _RECORDED_KEY, _present()
    present_since = (
        f"({PRESENT_SINCE_RECORD} and on ({on}) ({present})"
        f" and on ({on}) (timestamp({PRESENT_SINCE_RECORD}) > time() - {RECENT_S}))\nor on ({on})\n"
        f"(0 * max by ({on}) ({present}) + time())"
    )
    last_busy = (
        f"{_busy_at_eval(threshold_pct, BUSY_WINDOW_S)}\nor on ({on})\n"
        f'({LAST_BUSY_RECORD}{{{THRESHOLD_LABEL}="{threshold_text(threshold_pct)}"}} and on ({on}) {PRESENT_SINCE_RECORD})'
    )
    return [
        {"record": PRESENT_SINCE_RECORD, "expr": present_since, "labels": {MAX_GAP_LABEL: str(MAX_GAP_S)}},
        {"record": LAST_BUSY_RECORD, "expr": last_busy, "labels": {THRESHOLD_LABEL: threshold_text(threshold_pct)}},
    ]


def recorded_history(threshold_pct: float, live_s: float, selector: Selector = NO_SELECTOR) -> str:
    """queries.last_busy's and present_since's answers from the recording rules, in one answer (each series
    keeps its record's name: history.split_recorded), for the series (scoped by `selector`) under the threshold
    throughout the last `live_s`: that reaches back past the rules' last evaluation, so no burst since it goes
    unseen (a series busy in it gets no history, as one busy now: shorter, never longer). One read, so
    Prometheus filters the utilisation series once for both records (two reads did it twice).

    The name selector takes LAST_BUSY_RECORD at gpuctl's threshold only; PRESENT_SINCE_RECORD has no
    `threshold` label (it matches the empty value)."""
    records = f'{{__name__=~"{LAST_BUSY_RECORD}|{PRESENT_SINCE_RECORD}",{THRESHOLD_LABEL}=~"{threshold_text(threshold_pct)}|"}}'
    idle = _idle_throughout(threshold_pct, live_s, selector)
    return _kept(f"{records} and on ({_RECORDED_KEY}) ({idle})", "__name__", NAME_LABEL, *HISTORY_LABELS)


def samples_in_window(window_s: float, selector: Selector = NO_SELECTOR) -> str:
    """A count per utilisation name that had a sample in the `window_s` before the query's time, where the
    history reads it (scoped by `selector`); an empty answer when none did. Asked at a past time: whether
    Prometheus held samples then (gpuctl.sources.recorded.short_reach)."""
    window = duration(window_s)
    return " or ".join(
        f"count(present_over_time({m.name}{_matchers(selector, _where_chosen(m))}[{window}]))" for m in _util_names()
    )


def _present() -> str:
    """Each chosen utilisation series with a sample in the last PRESENT_WINDOW_S (value 1), tagged with its name."""
    window = duration(PRESENT_WINDOW_S)
    return _union(_util_names(), lambda m, sel: f"present_over_time({m.name}{sel}[{window}])", NO_SELECTOR, _where_chosen)


def _busy_at_eval(threshold_pct: float, window_s: float) -> str:
    """The evaluation's time, for each chosen series with a sample at or over the threshold in the last `window_s`."""

    def busy(m: MetricName, sel: str) -> str:
        return f"0 * (max_over_time({m.name}{sel}[{duration(window_s)}]) >= {threshold_pct / m.factor:g}) + time()"

    return f"max by ({_RECORDED_KEY}) ({_union(_util_names(), busy, NO_SELECTOR, _where_chosen)})"


def _idle_throughout(threshold_pct: float, window_s: float, selector: Selector) -> str:
    """Each chosen utilisation series whose samples in the last `window_s` were all under the threshold."""

    def idle(m: MetricName, sel: str) -> str:
        return f"max_over_time({m.name}{sel}[{duration(window_s)}]) < {threshold_pct / m.factor:g}"

    return _union(_util_names(), idle, selector, _where_chosen)
