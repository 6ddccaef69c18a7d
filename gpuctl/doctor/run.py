"""Run the checks over an Inventory and make the Report: `diagnose` is pure (the tests' seam),
`examine` gathers from a cluster first."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from gpuctl.config import Settings
from gpuctl.doctor import alerting, jobs, namespaces, partitioning, priority, scheduling, usage
from gpuctl.doctor.findings import Check, Finding, Report
from gpuctl.doctor.inventory import Inventory, gather, gather_live
from gpuctl.doctor.options import DoctorOptions
from gpuctl.errors import ConfigError

if TYPE_CHECKING:
    from gpuctl.service import Cluster

# One module per family of practices; each has CHECKS and find(inventory, options).
FAMILIES: tuple[ModuleType, ...] = (scheduling, namespaces, jobs, priority, usage, partitioning, alerting)
ALL_CHECKS: tuple[Check, ...] = tuple(check for family in FAMILIES for check in family.CHECKS)

DEFAULTS = DoctorOptions()
Find = Callable[[Inventory, DoctorOptions], Iterable[Finding]]


def check_selection(selected: Sequence[str]) -> tuple[str, ...]:
    """Validate `--check` values (ids or families); raises ConfigError naming the known ones."""
    families = {c.id.split(".")[0] for c in ALL_CHECKS}
    ids = {c.id for c in ALL_CHECKS}
    unknown = [s for s in selected if s not in ids and s.rstrip(".") not in families]
    if unknown:
        raise ConfigError(
            f"unknown check {', '.join(unknown)}",
            hint=f"checks: {', '.join(sorted(ids))}; or a family: {', '.join(sorted(families))}",
        )
    return tuple(selected)


def diagnose(inv: Inventory, options: DoctorOptions = DEFAULTS) -> Report:
    ran = tuple(c.id for c in ALL_CHECKS if options.selects(c.id))
    found: list[Finding] = []
    for family in FAMILIES:
        find: Find = family.find
        found += (f for f in find(inv, options) if f.check in ran and _in_namespace(f, options.namespace))
    found.sort(key=lambda f: (-f.severity.rank, f.check, [o.key for o in f.objects]))
    return Report(
        taken_at=inv.snapshot.taken_at, context=inv.context, checks=ran, findings=tuple(found), skipped=inv.skipped
    )


def _in_namespace(f: Finding, namespace: str | None) -> bool:
    if namespace is None:
        return True
    return any(o.namespace == namespace or (o.kind == "Namespace" and o.name == namespace) for o in f.objects)


async def examine_live(cluster: Cluster, options: DoctorOptions = DEFAULTS) -> Report:
    """Diagnose a running cluster (the bot's, the TUI's) from its latest snapshot plus one-shot reads."""
    return diagnose(await gather_live(cluster), options)


async def examine(settings: Settings, options: DoctorOptions = DEFAULTS, *, rule_files: Sequence[Path] = ()) -> Report:
    """Gather from the cluster `settings` name and diagnose it (read-only)."""
    return diagnose(await gather(settings, rule_files=rule_files), options)
