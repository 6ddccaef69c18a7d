"""The compact human summary `gpuctl snapshot` prints: health, pools, quotas, top idle holders.

With no cluster behind the readings (`--local`: this machine's GPUs via NVML)
it prints the GPUs themselves instead: there are no pools, quotas or holders.

Plain text, fixed-width columns, no colour: it goes to terminals, pipes, CI
logs and chat messages alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuctl.model import Snapshot
from gpuctl.query.fleet import idle_holders, totals
from gpuctl.render.format import duration as human_duration

TOP_IDLE = 10


def duration(seconds: float | None) -> str:
    """'45s', '12m', '2h05m', '3d04h'; '-' when unknown (plain ASCII: pipes and chat)."""
    return human_duration(seconds, unknown="-")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> list[str]:
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right or [False] * len(headers)
    return [
        "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)).rstrip()
        for row in cells
    ]


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def health_lines(snap: Snapshot) -> list[str]:
    return [*_stopped_lines(snap), _cluster_line(snap), _metrics_line(snap)]


def _stopped_lines(snap: Snapshot) -> list[str]:
    return [f"STOPPED: {f.source} since {f.since:%H:%M:%S}Z - {f.error}" for f in snap.failures]


def _cluster_line(snap: Snapshot) -> str:
    watch = snap.watch
    if watch.source == "none":
        return "cluster: none (GPUs only: no pods, so no GPU is held or idle)"
    where = f"context {watch.context}" if watch.context else watch.source
    state = "connected" if watch.connected else "DISCONNECTED"
    line = f"cluster: {where}, {state}"
    if watch.relists:
        line += f", {watch.relists} re-list(s)"
    if watch.objects_skipped:
        line += f", {watch.objects_skipped} object(s) unreadable, left out"
    if watch.error:
        line += f" - {watch.error}"
    return line


def _metrics_line(snap: Snapshot) -> str:
    metrics = snap.metrics
    m = f"metrics: {metrics.source}"
    if metrics.age_s is not None:
        m += f", {duration(metrics.age_s)} old"
    if metrics.stale:
        m += ", STALE"
    if metrics.unconfirmed:
        m += f", UNCONFIRMED: every reading shown stale - {metrics.unconfirmed}"
    if metrics.gpus_missing:
        since = f" since {metrics.missing_since:%H:%M:%S}Z" if metrics.missing_since else ""
        m += f", PARTIAL: {metrics.gpus_missing} GPU(s) missing{since} ({metrics.gpus_reported} reported)"
    if metrics.error:
        m += f" - {metrics.error}"
    if metrics.series_rejected:
        m += f" ({metrics.series_rejected} series rejected)"
    if metrics.gpus_stale:
        m += f"; {metrics.gpus_stale} GPU(s) STALE (frozen or no recent sample: neither busy nor idle)"
    if metrics.unmatched_hosts:
        m += f"; {metrics.unmatched_hosts} host(s) match no node (another cluster? see --metrics-selector)"
    if metrics.history_pending:
        m += "; idle history pending: idle streaks count from gpuctl's start until it answers"
    if metrics.history_error:
        m += f"; idle history failed, retry at {metrics.history_retry_at:%H:%M:%S}Z - {metrics.history_error}"
    return m


def idle_definition(snap: Snapshot) -> str:
    return f"idle = held and under {snap.idle_threshold_pct:g}% for {duration(snap.idle_window_s)}"


def render_summary(snap: Snapshot, *, top_idle: int = TOP_IDLE) -> str:
    if snap.watch.source == "none":
        return _render_gpus_only(snap)
    t = totals(snap)
    out = [
        f"gpuctl snapshot at {snap.taken_at:%Y-%m-%d %H:%M:%S}Z (generation {snap.generation})",
        *health_lines(snap),
        "",
        f"GPUs: {t.gpus} allocatable, {t.allocated} allocated ({t.busy} busy, {t.idle} idle, "
        f"{t.quiet} quiet or unmeasured), {t.free} free; {idle_definition(snap)}",
    ]
    firing = [a for a in snap.alerts if a.state == "firing"]
    if firing:
        names = sorted({a.name for a in firing})
        out.append(f"alerts: {len(firing)} firing ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")

    out += ["", "POOLS"]
    if snap.pools:
        out += table(
            ["pool", "nodes", "ready", "gpus", "alloc", "idle", "models"],
            [(p.name, p.nodes, p.nodes_ready, p.gpus_total, p.gpus_allocated, p.gpus_idle, ", ".join(p.gpu_models) or "-")
             for p in snap.pools],
            right=[False, True, True, True, True, True, False],
        )  # fmt: skip
    else:
        out.append("(no GPU nodes)")

    quotas = [n for n in snap.namespaces if n.gpu_quota_hard is not None or n.gpus_requested]
    out += ["", "NAMESPACES"]
    if quotas:
        out += table(
            ["namespace", "quota", "used", "requested", "busy", "idle", "gpu-hours"],
            [(n.name, _number(n.gpu_quota_hard), _number(n.gpu_quota_used if n.gpu_quota_hard is not None else None),
              n.gpus_requested, n.gpus_busy,
              n.gpus_idle, f"{n.gpu_hours:.1f}") for n in quotas],
            right=[False, True, True, True, True, True, True],
        )  # fmt: skip
    else:
        out.append("(no GPU pods or GPU quotas)")

    holders = idle_holders(snap)
    out += ["", f"TOP IDLE HOLDERS ({len(holders)} pods idle)"]
    if holders:
        out += table(
            ["pod", "node", "gpus", "idle for", "util", "owner"],
            [(p.key, p.node, p.gpus_total, duration(p.idle_for_s),
              "-" if p.util_pct is None else f"{p.util_pct:.1f}%",
              f"{p.owner_kind}/{p.owner_name}" if p.owner_kind else "-") for p in holders[:top_idle]],
            right=[False, False, True, True, True, False],
        )  # fmt: skip
    else:
        out.append("(none)")
    return "\n".join(out) + "\n"


def _render_gpus_only(snap: Snapshot) -> str:
    """No Kubernetes: every GPU's readings (nothing is held by a pod, so nothing is idle)."""
    out = [
        f"gpuctl snapshot at {snap.taken_at:%Y-%m-%d %H:%M:%S}Z (generation {snap.generation})",
        *health_lines(snap),
        "",
        f"GPUS ({len(snap.gpus)})",
    ]
    if not snap.gpus:
        return "\n".join([*out, "(no GPU reported)"]) + "\n"
    out += table(
        ["gpu", "model", "util", "memory used", "temp", "power", ""],
        [(f"{g.node}/{g.index}" + (f" mig {g.mig_instance} {g.mig_profile or ''}".rstrip() if g.mig_instance is not None else ""),
          g.model, _unit(g.util_pct, "%"), _memory(g.mem_used_mib, g.mem_total_mib), _unit(g.temp_c, " C"),
          _unit(g.power_w, " W"), "STALE" if g.stale else "") for g in snap.gpus],
        right=[False, False, True, True, True, True, False],
    )  # fmt: skip
    return "\n".join(out) + "\n"


def _unit(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def _memory(used_mib: float | None, total_mib: float | None) -> str:
    if used_mib is None:
        return "-"
    return f"{used_mib / 1024:.1f} GiB" + (f" of {total_mib / 1024:.1f}" if total_mib else "")
