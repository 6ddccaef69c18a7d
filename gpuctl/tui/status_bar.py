"""The one-line status bar: which cluster, how fresh the data is, what it counts.

Lost connectivity is a state, not an error: a stale metrics feed or a watch
that is reconnecting shows as a calm yellow badge while the last known
picture stays on screen.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gpuctl.model import Snapshot
from gpuctl.tui.filtering import Filter
from gpuctl.tui.format import duration


def status_text(snapshot: Snapshot | None, *, context: str | None, flt: Filter, feed_error: str | None) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    ctx = context or (snapshot.watch.context if snapshot else None) or "cluster"
    t.append(f" {ctx} ", style="bold reverse")
    if flt.active:  # first, so a narrow terminal never hides that the views are filtered
        t.append(" filter: ", style="bold")
        t.append(flt.text, style="bold cyan")
        t.append(" ·")
    if feed_error is not None:
        t.append(f" data feed stopped: {feed_error} ", style="bold yellow")
    if snapshot is None:
        if feed_error is None:
            t.append(" connecting… waiting for the first snapshot", style="dim")
        return t
    m, w = snapshot.metrics, snapshot.watch
    t.append(" ")
    if m.source == "none":
        t.append("no metrics source", style="yellow")
    elif m.stale:
        t.append(f"metrics STALE {duration(m.age_s)}", style="bold yellow")
        if m.error:
            t.append(f" ({m.error})", style="yellow")
    else:
        t.append(f"metrics {duration(m.age_s)}", style="green")
    t.append(" · ")
    if w.connected:
        t.append("watch ●", style="green")
    else:
        t.append("watch ○ reconnecting", style="bold yellow")
    if w.relists:
        t.append(f" {w.relists} relists", style="dim")
    gpus = len(snapshot.gpus)
    alloc = sum(1 for g in snapshot.gpus if g.pod is not None)
    idle = sum(1 for g in snapshot.gpus if g.idle)
    t.append(f" · {len(snapshot.nodes)} nodes · {gpus} GPUs · {alloc} alloc · ")
    t.append(f"{idle} idle", style="bold magenta" if idle else "")
    firing = sum(1 for a in snapshot.alerts if a.state == "firing")
    if firing:
        t.append(" · ")
        t.append(f"{firing} firing", style="bold red")
    return t


class StatusBar(Static):
    def show(
        self, snapshot: Snapshot | None, *, context: str | None, flt: Filter, feed_error: str | None = None
    ) -> None:
        self.update(status_text(snapshot, context=context, flt=flt, feed_error=feed_error))
