"""Small, pure formatting helpers shared by every front end (TUI views, CLI summary, chat).

Ages are always measured against the snapshot's `taken_at`, never the wall
clock: the screen then shows what the data says, and tests render the same
frame every time.
"""

from __future__ import annotations

from datetime import datetime

from gpuctl.model import GpuPod, Node

_SPARK = "▁▂▃▄▅▆▇█"


def duration(seconds: float | None, unknown: str = "—") -> str:
    """Compact human duration: 45s, 12m, 3h20m, 4d06h; `unknown` (an em dash) when None."""
    if seconds is None:
        return unknown
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m:02d}m"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h:02d}h"


def age(created: datetime | None, now: datetime) -> str:
    if created is None:
        return "—"
    return duration((now - created).total_seconds())


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def num(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def mib(value: float | None) -> str:
    """MiB shown as GiB with one decimal, the unit people read GPU memory in."""
    return "—" if value is None else f"{value / 1024:.1f}G"


def bar(used: float, total: float, width: int) -> str:
    """A fixed-width bar of eighths; over 100% is drawn full (the caller colours it)."""
    if width <= 0:
        return ""
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, used / total))
    eighths = round(frac * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest and full < width else ""
    return ("█" * full + partial).ljust(width, "·")


def sparkline(values: list[float | None], width: int, top: float = 100.0) -> str:
    """The last `width` values as block characters; gaps (no data) as spaces."""
    tail = values[-width:] if width > 0 else []
    out: list[str] = []
    for v in tail:
        if v is None:
            out.append(" ")
            continue
        frac = min(1.0, max(0.0, v / top)) if top > 0 else 0.0
        out.append(_SPARK[min(len(_SPARK) - 1, int(frac * len(_SPARK)))])
    return "".join(out).rjust(width)


def short_model(model: str | None) -> str:
    """'NVIDIA-A100-SXM4-80GB' -> 'A100-SXM4-80GB': the vendor prefix is noise in a narrow column."""
    if not model:
        return "—"
    for prefix in ("NVIDIA-", "NVIDIA ", "Tesla-", "Tesla "):
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def gpu_count(whole: int, mig: int, slices: int = 0, replicas: int = 1) -> str:
    """GPUs as people say them: '8', '2 MIG', '4+2 MIG', '3 slices', '1+3 slices'; '2 ×4' for GPUs shared 4 ways."""
    if not mig:
        text = str(whole)
    else:
        text = f"{mig} MIG" if not whole else f"{whole}+{mig} MIG"
    if replicas > 1:
        text += f" ×{replicas}"
    if slices:
        shared = f"{slices} slice{'s' if slices != 1 else ''}"
        text = shared if text == "0" else f"{text}+{shared}"
    return text


def truncate(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def node_status(n: Node) -> str:
    """'Ready', 'NotReady', 'Ready,Cordoned'."""
    return ("Ready" if n.ready else "NotReady") + (",Cordoned" if n.cordoned else "")


def mig_state(n: Node) -> str:
    """MIG config/state as the MIG manager labels them ('all-1g.10gb/success'), '—' when not partitioned."""
    if not (n.mig_config or n.mig_config_state):
        return "—"
    return f"{n.mig_config or '?'}/{n.mig_config_state or '?'}"


def taints(n: Node) -> str:
    """'gpu:NoSchedule,dedicated:NoExecute' (nvidia.com/ dropped), '—' when none."""
    return ",".join(f"{t.key.removeprefix('nvidia.com/')}:{t.effect}" for t in n.taints) or "—"


def owner(p: GpuPod) -> str:
    """The pod's top controller as Kind/name, '—' when it has none."""
    return f"{p.owner_kind}/{p.owner_name}" if p.owner_kind else "—"
