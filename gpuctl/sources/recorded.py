"""The idle history from gpuctl's recording rules: two cheap instant reads instead of two subqueries.

deploy/prometheus/gpuctl-rules.yaml's group `gpuctl-history` records, every
RULE_INTERVAL_S, per utilisation series (the name merge_readings would choose,
as queries._where_chosen; only queries.HISTORY_LABELS kept):

* LAST_BUSY: the last evaluation whose BUSY_WINDOW_S (two intervals, so a
  late or skipped evaluation misses no burst) held a sample at or over the
  threshold (its `threshold` label), else its own previous value, while the
  series is present;
* PRESENT_SINCE: the first evaluation at which the series was present (a
  sample in the last PRESENT_WINDOW_S), kept while it stays present and the
  previous value is at most RECENT_S old; a gap resets it. It never vouches
  for a gap over MAX_GAP_S (its `max_gap_seconds` label) = PRESENT_WINDOW_S +
  RECENT_S, so gpuctl uses it only with a grace period at least that long.

Every value is an evaluation's time, never earlier than the truth: a streak
read from them is shorter than the truth by up to a window, never longer, and
reaches back no further than the rules have run (PRESENT_SINCE starts then).

`rules()` builds the shipped expressions (tests/unit/sources/test_recorded.py
checks the YAML against it); `choose()` decides, from the rules API, whether
gpuctl may read them; `last_busy()` and `present_since()` are the reads, whose
answers have the shape of queries.last_busy's and queries.present_since's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpuctl.sources.queries import HISTORY_LABELS, NAME_LABEL, MetricName, _idle_now, _union, _util_names, _where_chosen, duration
from gpuctl.sources.selector import NO_SELECTOR, Selector

GROUP = "gpuctl-history"
LAST_BUSY = "gpuctl:gpu_last_busy_timestamp_seconds"
PRESENT_SINCE = "gpuctl:gpu_present_since_timestamp_seconds"
THRESHOLD_LABEL = "threshold"
MAX_GAP_LABEL = "max_gap_seconds"
RULE_INTERVAL_S = 30  # the group's interval the windows below are made for (a shorter one is fine)
BUSY_WINDOW_S = 2 * RULE_INTERVAL_S
PRESENT_WINDOW_S = 120  # a sample in the last 2 minutes: scrape intervals up to a minute, with one missed
RECENT_S = 2 * RULE_INTERVAL_S  # PRESENT_SINCE continues from a value at most this old (one evaluation skipped)
MAX_GAP_S = PRESENT_WINDOW_S + RECENT_S
SHIPPED_THRESHOLD_PCT = 5.0  # as the shipped GpuIdleWhileAllocated alert and gpuctl's default idle threshold
# How old the rules' last evaluation may be (in group intervals) for gpuctl to read them.
CURRENT_INTERVALS = 2
_ON = ", ".join((NAME_LABEL, *HISTORY_LABELS))


def threshold_text(threshold_pct: float) -> str:
    """The `threshold` label's value for a threshold in percent (`5`, `2.5`)."""
    return f"{threshold_pct:g}"


def _present(sel: Selector = NO_SELECTOR) -> str:
    """Every chosen utilisation series with a sample in the last PRESENT_WINDOW_S, tagged with its name (1 each)."""
    window = duration(PRESENT_WINDOW_S)
    return _union(_util_names(), lambda m, s: f"present_over_time({m.name}{s}[{window}])", sel, _where_chosen)


def _busy_now(threshold_pct: float, window_s: float, sel: Selector = NO_SELECTOR) -> str:
    """For series with a sample at or over the threshold in the last `window_s`: the evaluation's time."""

    def busy(m: MetricName, s: str) -> str:
        return f"0 * (max_over_time({m.name}{s}[{duration(window_s)}]) >= {threshold_pct / m.factor:g}) + time()"

    return f"max by ({_ON}) ({_union(_util_names(), busy, sel, _where_chosen)})"


def rules(threshold_pct: float = SHIPPED_THRESHOLD_PCT) -> list[dict[str, Any]]:
    """The `gpuctl-history` group's rules (record, expr, labels), as deploy/prometheus/gpuctl-rules.yaml ships them."""
    threshold = threshold_text(threshold_pct)
    present = _present()
    last_busy = (
        f"{_busy_now(threshold_pct, BUSY_WINDOW_S)}\nor on ({_ON})\n"
        f'({LAST_BUSY}{{{THRESHOLD_LABEL}="{threshold}"}} and on ({_ON}) ({present}))'
    )
    present_since = (
        f"({PRESENT_SINCE} and on ({_ON}) ({present})"
        f" and on ({_ON}) (timestamp({PRESENT_SINCE}) > time() - {RECENT_S}))\nor on ({_ON})\n"
        f"(0 * max by ({_ON}) ({present}) + time())"
    )
    return [
        {"record": LAST_BUSY, "expr": last_busy, "labels": {THRESHOLD_LABEL: threshold}},
        {"record": PRESENT_SINCE, "expr": present_since, "labels": {MAX_GAP_LABEL: str(MAX_GAP_S)}},
    ]


def last_busy(threshold_pct: float, interval_s: float, selector: Selector = NO_SELECTOR) -> str:
    """The recorded last-busy times of the series under the threshold now (scoped by `selector`), with the
    time since the rules' last evaluation read live: a burst after it is busy now (the window reaches one
    interval past the oldest evaluation choose() accepts)."""
    live = _busy_now(threshold_pct, (CURRENT_INTERVALS + 1) * interval_s, selector)
    recorded = f'{LAST_BUSY}{{{THRESHOLD_LABEL}="{threshold_text(threshold_pct)}"}}'
    return f"({live} or on ({_ON}) {recorded}) and on ({_ON}) ({_idle_now_all(threshold_pct, selector)})"


def present_since(threshold_pct: float, selector: Selector = NO_SELECTOR) -> str:
    """The recorded present-since times of the series under the threshold now (scoped by `selector`)."""
    return f"{PRESENT_SINCE} and on ({_ON}) ({_idle_now_all(threshold_pct, selector)})"


def _idle_now_all(threshold_pct: float, selector: Selector) -> str:
    return _union(_util_names(), lambda m, s: _idle_now(m, s, threshold_pct), selector, _where_chosen)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The recording rules as the rules API describes them, fit for gpuctl to read."""

    interval_s: float
    last_evaluation: datetime  # the older of the two rules' last evaluations


def choose(groups: Any, *, threshold_pct: float, grace_s: float, now: datetime) -> Recorded | str:
    """The rules to read, or why not (then gpuctl falls back to the subqueries).

    `groups`: the rules API's `data.groups`; `now`: Prometheus's time. Usable means: a healthy LAST_BUSY
    rule whose `threshold` is gpuctl's and a healthy PRESENT_SINCE rule whose `max_gap_seconds` is within
    gpuctl's grace period, in groups no slower than RULE_INTERVAL_S, both evaluated within
    CURRENT_INTERVALS intervals of `now` (so each has recorded every series at least once since)."""
    found = list(_recording_rules(groups))
    busy = [r for r in found if r.name == LAST_BUSY]
    present = [r for r in found if r.name == PRESENT_SINCE]
    if not busy or not present:
        return f"recording rules {GROUP} not loaded (no {LAST_BUSY if not busy else PRESENT_SINCE})"
    want = threshold_text(threshold_pct)
    matching = [r for r in busy if r.labels.get(THRESHOLD_LABEL) == want]
    if not matching:
        theirs = ", ".join(sorted({str(r.labels.get(THRESHOLD_LABEL)) for r in busy}))
        return f"recording rules record threshold {theirs} %, not gpuctl's {want} %"
    chosen = []
    for candidates in (matching, present):
        problem = ""
        for rule in candidates:
            problem = rule.problem(grace_s=grace_s, now=now)
            if not problem:
                chosen.append(rule)
                break
        if problem:
            return problem
    return Recorded(interval_s=max(r.interval_s for r in chosen), last_evaluation=min(r.last_evaluation for r in chosen))


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    labels: Mapping[str, str]
    health: str
    error: str
    interval_s: float
    last_evaluation: datetime | None

    def problem(self, *, grace_s: float, now: datetime) -> str:
        """Why gpuctl may not read this rule's series; '' when it may."""
        if self.health != "ok":
            return f"recording rule {self.name} is {self.health or 'not evaluated'}: {self.error}".rstrip(": ")
        if self.interval_s > RULE_INTERVAL_S:
            return f"recording rule {self.name} runs every {self.interval_s:g} s; its windows need {RULE_INTERVAL_S} s or less"
        gap = self.labels.get(MAX_GAP_LABEL)
        if self.name == PRESENT_SINCE and (gap is None or not _number(gap) or float(gap) > grace_s):
            return f"recording rule {self.name} allows gaps of {gap} s, over gpuctl's grace period of {grace_s:g} s"
        age = None if self.last_evaluation is None else (now - self.last_evaluation).total_seconds()
        if age is None or age > CURRENT_INTERVALS * self.interval_s:
            when = "never" if age is None else f"{age:.0f} s ago"
            return f"recording rule {self.name} last evaluated {when}: not current"
        return ""


def _recording_rules(groups: Any) -> Iterable[_Rule]:
    """The recording rules in the rules API's groups; malformed entries are skipped."""
    for group in groups if isinstance(groups, list) else ():
        if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
            continue
        interval = group.get("interval")
        for rule in group["rules"]:
            if not isinstance(rule, dict) or rule.get("type") != "recording" or rule.get("name") not in (LAST_BUSY, PRESENT_SINCE):
                continue
            labels = rule.get("labels")
            yield _Rule(
                name=rule["name"],
                labels={k: str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
                health=str(rule.get("health", "")),
                error=str(rule.get("lastError", "")),
                interval_s=float(interval) if _number(interval) else float("inf"),
                last_evaluation=_time(rule.get("lastEvaluation")),
            )


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _time(text: Any) -> datetime | None:
    """An RFC 3339 time as the rules API writes it (nanoseconds, `Z`); None for Go's zero time or junk."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else None
