"""Alert rules: memory ratios divide by used + free, never by free alone."""

from __future__ import annotations

from collections.abc import Iterable

from gpuctl.doctor.findings import Check, Finding, Involved, Severity, finding
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.rules import divides_used_by_free

MEMORY_RATIO = Check(
    id="alerts.memory-ratio",
    severity=Severity.WARNING,
    title="memory rule divides used by free",
    why="FB_USED / FB_FREE is not a fraction of memory: it passes 0.92 at about 48 % full and 1 at half, so the "
    "alert fires on healthy GPUs (and gets silenced, then misses the real ones).",
    fix="Divide by the total: DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) (both MiB), as "
    "deploy/prometheus/gpuctl-rules.yaml does.",
)
CHECKS = (MEMORY_RATIO,)


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    for rule in inv.rules or ():
        if divides_used_by_free(rule.expr):
            where = f"group {rule.group} in {rule.source}"
            yield finding(MEMORY_RATIO, f"{where}: {' '.join(rule.expr.split())}", Involved(kind="PrometheusRule", name=rule.name))
