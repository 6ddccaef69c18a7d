"""Block Kit for playbook runs: a plan to approve, who decided, how a run ended, the run list, the audit log.

A plan reads as what an approver must see before clicking: each target with
its change (before → after), the GPUs affected, warnings, what was left out,
why it is blocked, and the fingerprint of exactly what is being approved.
Every name in it went through `esc` (blocks.code escapes its own lines).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gpuctl.audit.records import AuditRecord
from gpuctl.bot.blocks import Block, Reply, code, context, cut, esc, fields, header, section
from gpuctl.bot.engine_seam import review_buttons
from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import PlaybookRun
from gpuctl.render.audit import render_records
from gpuctl.render.plan import render_outcome, render_runs

MAX_STEPS = 15  # step lines shown in a plan; the rest are counted
MAX_RUNS = 20
MAX_RECORDS = 25


def _value(value: object) -> str:
    return "-" if value is None else str(value)


def plan_blocks(plan: Plan, *, run_id: str | None) -> list[Block]:
    """The plan as blocks (no buttons): targets and changes, GPUs, warnings, left out, blocked, fingerprint."""
    params = ", ".join(f"{k}={v}" for k, v in plan.parameters.items() if v is not None) or "defaults"
    blocks: list[Block] = [
        header(f"Plan: {plan.playbook}"),
        fields([
            ("Requested by", esc(f"{plan.requester.identity} via {plan.requester.via}")),
            ("Parameters", esc(params)),
            ("GPUs affected", str(plan.gpus_affected)),
            ("Dry run", plan.dry_run),
        ]),
    ]  # fmt: skip
    steps = cut(plan.steps, MAX_STEPS)
    lines: list[str] = []
    for step in steps.shown:
        changes = [f"{c.field}: {_value(c.before)} → {_value(c.after)}" for c in step.changes] or [step.detail or ""]
        gpus = f" ({step.gpus} GPU{'s' if step.gpus != 1 else ''})" if step.gpus else ""
        lines.append(f"{step.target.key}  {step.action}{gpus}")
        lines += [f"  {change}" for change in changes]
    if lines:
        blocks.append(code(lines))
        if steps.hidden:
            blocks.append(context(steps.note("steps", "`gpuctl playbook plan` shows them all")))
    else:
        blocks.append(section("_Nothing to do._"))
    for warning in plan.warnings[:5]:
        blocks.append(section(f":warning: {esc(warning)}"))
    if plan.skipped:
        left = cut(plan.skipped, 5)
        text = "\n".join(f"• {esc(s.target.key)}: {esc(s.reason)}" for s in left.shown)
        note = left.note("left out", "the audit log has them all")
        blocks.append(section(f"*Left out*\n{text}" + (f"\n_{note}_" if note else "")))
    for reason in plan.blocked[:5]:
        blocks.append(section(f":no_entry: *Blocked:* {esc(reason)}"))
    blocks.append(context(f"fingerprint `{plan.fingerprint}`" + (f" · run `{esc(run_id)}`" if run_id else "")))
    return blocks


def awaiting_blocks(submitted: Submitted) -> list[Block]:
    """A submitted run awaiting approval: its plan, who may approve, and the Approve / Deny buttons."""
    who = "; ".join(submitted.approvers) or "no role in the policy may approve it"
    return [
        *plan_blocks(submitted.plan, run_id=submitted.run_id),
        section(f"*Awaiting approval* by someone other than {esc(submitted.plan.requester.identity.user)}: {esc(who)}"),
        review_buttons(submitted.run_id),
    ]


def decided_reply(run: PlaybookRun, plan: Plan) -> Reply:
    """The plan message once decided: who approved or denied (no buttons), and what happens next."""
    decisions = [a for a in run.status.approvals if a.plan_fingerprint == plan.fingerprint]
    said = "; ".join(f"{a.decision.lower()} by {a.user} at {a.at:%H:%M} UTC" for a in decisions) or run.status.phase
    phase = run.status.phase or "Pending"
    nxt = " · the executor carries it out as the requester" if phase == "Approved" else ""
    blocks = [*plan_blocks(plan, run_id=run.name), section(f"*{esc(phase)}*: {esc(said)}{nxt}")]
    return Reply(text=f"run {run.name}: {phase} ({said})", blocks=blocks, in_channel=True, replaces=True)


def outcome_reply(outcome: Outcome, plan: Plan) -> Reply:
    """How a run ended: its plan, the result with every step and check, and the audit run id."""
    icon = ":white_check_mark:" if outcome.ok else ":x:"
    blocks = [
        *plan_blocks(plan, run_id=outcome.run_id),
        section(f"{icon} *{esc(outcome.phase)}*: {esc(outcome.message)}"),
        code(render_outcome(outcome).splitlines()[1:] or ["(no steps recorded)"]),
        context(f"audit: `/gpu audit {esc(outcome.run_id)}` · `gpuctl audit show {esc(outcome.run_id)}`"),
    ]
    return Reply(text=f"run {outcome.run_id}: {outcome.phase}: {outcome.message}", blocks=blocks, in_channel=True, replaces=True)


def ended_reply(run: PlaybookRun, plan: Plan) -> Reply:
    """A run that ended elsewhere (the executor), read back from its PlaybookRun."""
    phase = run.status.phase or "Pending"
    message = str((run.status.result or {}).get("message") or phase)
    icon = ":white_check_mark:" if phase == "Succeeded" else ":x:"
    steps = [f"step {i + 1}: {s.state}{': ' + s.message if s.message else ''}" for i, s in enumerate(run.status.steps)]
    approved = ", ".join(a.user for a in run.status.approvals if a.decision == "Approved")
    blocks = [
        *plan_blocks(plan, run_id=run.name),
        section(f"{icon} *{esc(phase)}*: {esc(message)}" + (f"\napproved by {esc(approved)}" if approved else "")),
        *([code(steps)] if steps else []),
        context(f"audit: `/gpu audit {esc(run.name)}` · `gpuctl audit show {esc(run.name)}`"),
    ]
    return Reply(text=f"run {run.name}: {phase}: {message}", blocks=blocks, in_channel=True, replaces=True)


def runs_reply(runs: Sequence[PlaybookRun], now: datetime) -> Reply:
    if not runs:
        return Reply(text="No playbook runs", blocks=[section("*Playbook runs*\nNo runs yet.")])
    newest = sorted(runs, key=lambda r: r.created_at, reverse=True)
    shown = cut(newest, MAX_RUNS)
    table = render_runs(shown.shown, now).splitlines()
    blocks = [header("Playbook runs"), code(table)]
    if shown.hidden:
        blocks.append(context(shown.note("runs", "`gpuctl playbook runs` lists them all")))
    blocks.append(context("`/gpu audit RUN` shows one run's audit records"))
    return Reply(text=f"{len(runs)} playbook runs", blocks=blocks)


def audit_reply(records: Sequence[AuditRecord], run_id: str | None, *, more: bool) -> Reply:
    title = f"Audit: run {run_id}" if run_id else "Audit log (newest last)"
    if not records:
        body = f"No audit records for run `{esc(run_id)}`." if run_id else "The audit log is empty."
        return Reply(text=title, blocks=[section(f"*{esc(title)}*\n{body}")])
    blocks = [header(title), code(render_records(records).splitlines())]
    if more:
        blocks.append(context(f"the last {len(records)} records shown; `gpuctl audit list` shows more"))
    return Reply(text=f"{title}: {len(records)} records", blocks=blocks)
