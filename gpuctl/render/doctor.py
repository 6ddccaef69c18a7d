"""`gpuctl doctor`'s report as text: most severe first, each check's findings together, why and fix once."""

from __future__ import annotations

import textwrap
from itertools import groupby

from gpuctl.doctor.findings import Finding, Report, Severity

WIDTH = 100
_ORDER = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


def render_report(report: Report) -> str:
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in _ORDER if report.count(s))
    where = f"context {report.context}" if report.context else "this cluster"
    lines = [f"gpuctl doctor: {where}, {len(report.checks)} checks, " + (f"findings: {counts}" if counts else "no findings")]
    for severity in _ORDER:
        found = [f for f in report.findings if f.severity == severity]
        if not found:
            continue
        lines += ["", f"{severity.value.upper()} ({len(found)})"]
        for check, group in groupby(found, key=lambda f: f.check):
            lines += _check_block(check, list(group))
    if report.skipped:
        lines += ["", "not checked:"] + [_wrap(s, "  - ", "    ") for s in report.skipped]
    return "\n".join(lines) + "\n"


def _check_block(check: str, findings: list[Finding]) -> list[str]:
    first = findings[0]
    lines = [f"  {check}: {first.title}"]
    for f in findings:
        objects = ", ".join(o.key for o in f.objects) or "cluster"
        lines.append(_wrap(f"{objects}: {f.detail}", "    - ", "      "))
    lines.append(_wrap(first.why, "    why: ", "         "))
    lines.append(_wrap(first.fix, "    fix: ", "         "))
    return lines


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)

