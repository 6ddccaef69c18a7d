"""Why a view is empty, in words: a filter, a cluster not reached yet, or truly nothing."""

from __future__ import annotations

from gpuctl.model import Snapshot
from gpuctl.query.filter import Filter


def empty_reason(snapshot: Snapshot | None, flt: Filter, what: str) -> str:
    if snapshot is None:
        return "Waiting for the first snapshot…"
    if flt.active:
        return f"No {what} match the filter '{flt.text}' (/ then esc clears it)."
    watch = snapshot.watch
    if not watch.connected and not snapshot.nodes:
        if any(f.source == watch.source for f in snapshot.failures):
            return f"{watch.error}. Nothing retries it: restart gpuctl (and please report the bug)."
        if watch.error is None:
            return "Connecting to the cluster…"
        return f"Not connected to the cluster yet ({watch.error}). Retrying…"
    return f"No {what} in this cluster."


def metrics_hint(snapshot: Snapshot) -> str | None:
    """Why GPUs show no numbers, when the metrics source explains it."""
    m = snapshot.metrics
    if m.source == "none":
        return "no metrics source: start gpuctl with --prometheus URL (DCGM exporter) to see utilisation"
    if any(f.source == m.source for f in snapshot.failures):
        return f"metrics stopped ({m.error}); showing the last values, which will not change"
    if m.stale:
        return f"metrics are stale ({m.error or 'no fresh data'}); showing the last values"
    return None
