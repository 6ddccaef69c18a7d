"""Whether gpuctl may read its idle history from its recording rules (queries.recording_rules), which make
it one cheap instant read (queries.recorded_history) instead of two subqueries.

deploy/prometheus/gpuctl-rules.yaml's group gpuctl-history records, every minute, per utilisation series
gpuctl reads: the last evaluation that saw it busy (at the threshold in its `threshold` label), and the
first evaluation since which it has been present without a gap over its `max_gap_seconds` label. Both
reach back only to when the rules began: a streak read from them is never longer than what Prometheus saw.

`choose()` decides from the rules API (what Prometheus has loaded, how it went, when it last ran):
healthy, current, gpuctl's threshold, a gap no longer than gpuctl's grace period; otherwise it says why,
and gpuctl reads the subqueries (queries.last_busy, present_since) as before. `short_reach()` adds the
other condition: rules that began within the subqueries' look-back prove less than they would, unless
Prometheus holds no older samples to prove it with (one that started with the rules: the source asks,
queries.samples_in_window).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpuctl.sources.queries import (
    LAST_BUSY_RECORD,
    MAX_GAP_LABEL,
    PRESENT_SINCE_RECORD,
    RULE_INTERVAL_S,
    THRESHOLD_LABEL,
    threshold_text,
)

GROUP = "gpuctl-history"  # the rule group deploy/prometheus/gpuctl-rules.yaml ships them in
# How old the rules' last evaluation may be (in group intervals) for gpuctl to read them.
CURRENT_INTERVALS = 2

@dataclass(frozen=True, slots=True)
class Recorded:
    """The recording rules as the rules API describes them, fit for gpuctl to read."""

    interval_s: float
    last_evaluation: datetime  # the older of the two rules' last evaluations


def choose(groups: Any, *, threshold_pct: float, grace_s: float, now: datetime) -> Recorded | str:
    """The rules to read, or why not (then gpuctl falls back to the subqueries); how far back they reach is
    short_reach's question.

    `groups`: the rules API's `data.groups`; `now`: Prometheus's time. Usable means: a healthy LAST_BUSY_RECORD
    rule whose `threshold` is gpuctl's and a healthy PRESENT_SINCE_RECORD rule whose `max_gap_seconds` is within
    gpuctl's grace period, in groups no slower than RULE_INTERVAL_S, both evaluated within
    CURRENT_INTERVALS intervals of `now` (so each has recorded every series at least once since)."""
    found = list(_recording_rules(groups))
    busy = [r for r in found if r.name == LAST_BUSY_RECORD]
    present = [r for r in found if r.name == PRESENT_SINCE_RECORD]
    if not busy or not present:
        return f"recording rules {GROUP} not loaded (no {LAST_BUSY_RECORD if not busy else PRESENT_SINCE_RECORD})"
    want = threshold_text(threshold_pct)
    matching = [r for r in busy if r.labels.get(THRESHOLD_LABEL) == want]
    if not matching:
        theirs = ", ".join(sorted({str(r.labels.get(THRESHOLD_LABEL)) for r in busy}))
        return f"recording rules record threshold {theirs} %, not gpuctl's {want} %"
    chosen: list[tuple[float, datetime]] = []
    for candidates in (matching, present):
        usable = [(r.interval_s, r.last_evaluation) for r in candidates if r.last_evaluation and not r.problem(grace_s=grace_s, now=now)]
        if not usable:
            return candidates[0].problem(grace_s=grace_s, now=now)
        chosen.append(usable[0])
    return Recorded(interval_s=max(i for i, _ in chosen), last_evaluation=min(at for _, at in chosen))


def short_reach(oldest: float | None, *, now: datetime, lookback_s: float) -> str | None:
    """Why the rules may prove less than the subqueries, or None when they reach back the look-back.

    `oldest`: the earliest PRESENT_SINCE_RECORD value (Unix seconds; None without one). Rules that began
    within `lookback_s` of `now` (loaded minutes ago, or back after an outage) have less to say than the
    subqueries, unless Prometheus holds no samples from before they began either: then they say as much,
    and the caller reads them after all (PrometheusSource.history_rules_usable asks)."""
    reach = None if oldest is None else now.timestamp() - oldest
    if reach is not None and reach >= lookback_s:
        return None
    back = "nothing yet" if reach is None else f"{max(0.0, reach):.0f} s"
    return f"recording rules reach back {back}, less than the history's look-back of {lookback_s:.0f} s"


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
        if self.name == PRESENT_SINCE_RECORD and (gap is None or not _number(gap) or float(gap) > grace_s):
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
            if not isinstance(rule, dict) or rule.get("type") != "recording" or rule.get("name") not in (LAST_BUSY_RECORD, PRESENT_SINCE_RECORD):
                continue
            labels = rule.get("labels")
            yield _Rule(
                name=rule["name"],
                labels={k: str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
                health=str(rule.get("health", "")),
                error=str(rule.get("lastError", "")),
                interval_s=float(interval) if isinstance(interval, int | float | str) and _number(interval) else float("inf"),
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
