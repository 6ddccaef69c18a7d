"""The one-line status bar: which cluster, how fresh the data is, what it counts.

Lost connectivity is a state, not an error: a stale metrics feed or a watch
that is reconnecting shows as a calm yellow badge, with when the next retry
is, while the last known picture stays on screen. So does a refresh that
brought far fewer GPUs than the last full one (a scrape gap, a Prometheus
restart): PARTIAL and how many are missing, never a fresh fleet without data.

A source that stopped on an unexpected error is different: nothing retries
it, and what it fed is frozen. It shows first, in red, for as long as the
app runs (not as a toast that goes away), and its watch or metrics badge
says STOPPED instead of counting down to a retry.
"""

from __future__ import annotations

import math
from datetime import datetime

from rich.text import Text

from gpuctl.model import Snapshot
from gpuctl.query.filter import Filter
from gpuctl.render.format import duration
from gpuctl.tui.line_text import LineText


def retry_text(retry_at: datetime | None, now: datetime | None) -> str:
    """', retry in 4s' (rounded up, so it never says 0s while waiting), ', retrying…' once due."""
    if retry_at is None or now is None:
        return ""
    left = (retry_at - now).total_seconds()
    return f", retry in {duration(math.ceil(left))}" if left > 0 else ", retrying…"


def missing_text(missing: int, since: datetime | None) -> str:
    """'12500 GPUs missing since 10:31:02' (MetricsHealth.gpus_missing)."""
    gpus = f"{missing} GPU{'s' if missing != 1 else ''} missing"
    return f"{gpus} since {since:%H:%M:%S}" if since is not None else gpus


def interval(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 else duration(seconds)


def pending_retry(snapshot: Snapshot | None) -> bool:
    """The bar shows a countdown for this snapshot (so it must be redrawn every second)."""
    if snapshot is None:
        return False
    m, w = snapshot.metrics, snapshot.watch
    return (m.stale and m.retry_at is not None) or (not w.connected and w.retry_at is not None)


def status_text(
    snapshot: Snapshot | None,
    *,
    context: str | None,
    flt: Filter,
    feed_error: str | None,
    refresh_s: float | None = None,
    reopening: str | None = None,
    now: datetime | None = None,
    held: tuple[int, int] | None = None,
    marked: int = 0,
) -> Text:
    """`marked`: rows (or heatmap nodes and pools) marked in the view on screen, what `a` acts on. `now` is the snapshot's time moved on by how long it has been on screen (for countdowns);
    `held`: the snapshot's (allocated, idle) GPU counts when already known (FleetIndex), else counted here."""
    t = Text(no_wrap=True, overflow="ellipsis")
    ctx = context or (snapshot.watch.context if snapshot else None) or "cluster"
    t.append(f" {ctx} ", style="bold reverse")
    for failure in snapshot.failures if snapshot is not None else ():
        # First of all: frozen data must not pass for live, however narrow the terminal.
        t.append(f" ✕ {failure.source} STOPPED {failure.since:%H:%M:%S}: {failure.error} ", style="bold white on red")
        t.append(" ·")
    if flt.active:  # first, so a narrow terminal never hides that the views are filtered
        t.append(" filter: ", style="bold")
        t.append(flt.text, style="bold cyan")
        t.append(" ·")
    if marked:  # what `a` acts on, before anything a narrow terminal cuts
        t.append(f" {marked} marked ", style="bold reverse magenta")
        t.append(" ·")
    if refresh_s is not None:
        t.append(f" every {interval(refresh_s)} ·", style="dim")
    if feed_error is not None:
        t.append(f" data feed stopped: {feed_error} ", style="bold yellow")
    elif reopening is not None:
        t.append(f" {reopening}", style="dim")
        if snapshot is not None:
            t.append(" ·")
    if snapshot is None:
        if feed_error is None and reopening is None:
            t.append(" connecting… waiting for the first snapshot", style="dim")
        return t
    m, w = snapshot.metrics, snapshot.watch
    now = now or snapshot.taken_at
    stopped = {f.source for f in snapshot.failures}
    t.append(" ")
    if m.source == "none":
        t.append("no metrics source", style="yellow")
    elif m.source in stopped:
        t.append(f"metrics STOPPED {duration(m.age_s)}", style="bold red")
    elif m.stale:
        t.append(f"metrics STALE {duration(m.age_s)}{retry_text(m.retry_at, now)}", style="bold yellow")
        if m.error:
            t.append(f" ({m.error})", style="yellow")
    elif m.unconfirmed:  # readings came, but nothing vouches that they are fresh: every GPU shows stale
        t.append(f"metrics UNCONFIRMED {duration(m.age_s)}", style="bold yellow")
        t.append(f" ({m.unconfirmed})", style="yellow")
    elif m.gpus_missing:  # fresh, but a gap: not a fleet without data
        t.append(f"metrics PARTIAL {duration(m.age_s)}", style="bold yellow")
    else:
        t.append(f"metrics {duration(m.age_s)}", style="green")
    if m.gpus_missing and m.source not in stopped:
        t.append(f", {missing_text(m.gpus_missing, m.missing_since)}", style="bold yellow")
    t.append(" · ")
    if w.source == "none":  # --local: this machine's GPUs, no Kubernetes to watch
        t.append("no cluster", style="dim")
    elif w.source in stopped:
        t.append("watch ✕ STOPPED", style="bold red")
    elif w.connected:
        t.append("watch ●", style="green")
    else:
        t.append(f"watch ○ reconnecting{retry_text(w.retry_at, now)}", style="bold yellow")
    if w.relists:
        t.append(f" {w.relists} relists", style="dim")
    if w.objects_skipped:
        t.append(f" {w.objects_skipped} unreadable", style="bold yellow")
    gpus = len(snapshot.gpus)
    if held is None:
        held = (sum(1 for g in snapshot.gpus if g.pod is not None), sum(1 for g in snapshot.gpus if g.idle))
    alloc, idle = held
    t.append(f" · {len(snapshot.nodes)} nodes · {gpus} GPUs · {alloc} alloc · ")
    t.append(f"{idle} idle", style="bold magenta" if idle else "")
    if m.history_pending:  # the idle counts are from gpuctl's start, not yet from Prometheus's history
        t.append(" (history pending)", style="yellow")
    elif m.history_error:
        t.append(" (history failed)", style="bold yellow")
    firing = sum(1 for a in snapshot.alerts if a.state == "firing")
    if firing:
        t.append(" · ")
        t.append(f"{firing} firing", style="bold red")
    return t


class StatusBar(LineText):
    """One line (app.tcss `#status`): a new text never changes its size, so it repaints without a layout pass."""

    def show(
        self,
        snapshot: Snapshot | None,
        *,
        context: str | None,
        flt: Filter,
        feed_error: str | None = None,
        refresh_s: float | None = None,
        reopening: str | None = None,
        now: datetime | None = None,
        held: tuple[int, int] | None = None,
        marked: int = 0,
    ) -> None:
        """Show `status_text` of these (repainted only when it reads differently)."""
        self.update(
            status_text(
                snapshot,
                context=context,
                flt=flt,
                feed_error=feed_error,
                refresh_s=refresh_s,
                reopening=reopening,
                now=now,
                held=held,
                marked=marked,
            )
        )
