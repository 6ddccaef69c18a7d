"""`/gpu doctor`: the doctor's report as Block Kit, most severe first, one section per check."""

from __future__ import annotations

from itertools import groupby

from gpuctl.bot.blocks import Block, Reply, context, cut, esc, header, section
from gpuctl.doctor.findings import Finding, Report, Severity

OBJECTS = 5  # findings listed per check before "… N more"
_ICON = {Severity.CRITICAL: ":red_circle:", Severity.WARNING: ":warning:", Severity.INFO: ":information_source:"}
_ORDER = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


def doctor_reply(report: Report, namespace: str | None = None) -> Reply:
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in _ORDER if report.count(s))
    where = f" in {namespace}" if namespace else ""
    title = f"GPU practices{where}: " + (counts or "no findings")
    blocks: list[Block] = [header(title)]
    for check, group in groupby(report.findings, key=lambda f: f.check):
        blocks.append(_check_section(check, list(group)))
    if report.skipped:
        blocks.append(context(esc("not checked: " + "; ".join(report.skipped))))
    blocks.append(context(esc(f"{len(report.checks)} checks at {report.taken_at:%H:%M:%S}Z · `gpuctl doctor` for the full report")))
    return Reply(text=title, blocks=blocks)


def _check_section(check: str, findings: list[Finding]) -> Block:
    first = findings[0]
    shown = cut(findings, OBJECTS)
    lines = [f"{_ICON[first.severity]} *{esc(first.title)}* `{check}`"]
    for f in shown.shown:
        objects = ", ".join(o.key for o in f.objects[:3]) + (" …" if len(f.objects) > 3 else "") or "cluster"
        lines.append(f"• {esc(objects)}: {esc(f.detail[:200])}")
    if shown.hidden:
        lines.append(f"… {shown.hidden} more")
    lines.append(f"_Fix:_ {esc(first.fix)}")
    return section("\n".join(lines))
