"""Text renderings of playbook runs for the CLI: a plan, a submission, an outcome, the run list.

A plan reads as a compact table (target, action, before → after, GPUs), then
what a person must see before approving: warnings, what was left out and why,
why it is blocked, its scopes and its fingerprint (what an approver approves).
`--json` prints the models instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.plan import Change, Plan
from gpuctl.playbooks.runs import PlaybookRun
from gpuctl.render.summary import duration, table

_WIDTH = 48  # a before → after cell longer than this is cut


def _value(value: Any) -> str:
    return "-" if value is None else str(value)


def _change(change: Change) -> str:
    text = f"{change.field}: {_value(change.before)} → {_value(change.after)}"
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def render_plan(plan: Plan) -> str:
    head = f"plan: {plan.playbook} for {plan.requester.identity}"
    params = ", ".join(f"{k}={v}" for k, v in plan.parameters.items() if v is not None)
    lines = [head + (f" ({params})" if params else "")]
    if plan.steps:
        rows = []
        for step in plan.steps:
            changes = [_change(c) for c in step.changes] or [step.detail or ""]
            rows.append((step.target.key, step.action, changes[0], step.gpus or ""))
            rows += [("", "", more, "") for more in changes[1:]]
        lines += ["", *table(("TARGET", "ACTION", "BEFORE → AFTER", "GPUS"), rows, right=[False, False, False, True])]
        lines.append(f"{len(plan.steps)} step(s), {plan.gpus_affected} GPU(s) affected")
    else:
        lines.append("nothing to do")
    lines += [f"warning: {w}" for w in plan.warnings]
    if plan.skipped:
        lines += ["", "left out:", *(f"  {s.target.key}: {s.reason}" for s in plan.skipped)]
    lines += [f"BLOCKED: {b}" for b in plan.blocked]
    lines.append("")
    if plan.scopes:
        lines.append(f"scopes: {', '.join(str(s) for s in plan.scopes)}")
    lines.append(f"dry run: {plan.dry_run}")
    lines.append(f"fingerprint: {plan.fingerprint}")
    return "\n".join(lines) + "\n"


def render_submitted(submitted: Submitted) -> str:
    if submitted.duplicate:
        return f"run {submitted.run_id} exists already for this key ({submitted.phase}); nothing new was done\n"
    if submitted.needs_approval:
        who = "; ".join(submitted.approvers) or "no role in the policy may approve it"
        return (
            f"submitted run {submitted.run_id}: awaiting approval by someone other than you\n"
            f"may approve: {who}\n"
            f"then: gpuctl playbook approve {submitted.run_id}   (the executor, or `gpuctl playbook execute "
            f"{submitted.run_id}`, carries it out)\n"
        )
    where = "" if submitted.shared else " (local: this cluster has no PlaybookRun CRD, the audit log records it)"
    return f"run {submitted.run_id}{where}\n"


def render_outcome(outcome: Outcome) -> str:
    lines = [f"run {outcome.run_id}: {outcome.phase}: {outcome.message}"]
    for step in outcome.report.outcomes if outcome.report else ():
        lines.append(f"  step {step.index + 1}: {step.status}: {step.message}")
    for check in outcome.verification.checks if outcome.verification else ():
        lines.append(f"  check {check.name}: {'ok' if check.ok else 'FAILED'}{': ' + check.detail if check.detail else ''}")
    return "\n".join(lines) + "\n"


def render_runs(runs: Sequence[PlaybookRun], now: datetime) -> str:
    if not runs:
        return "no runs\n"
    rows = [
        (r.name, r.spec.playbook, r.status.phase or "Pending", r.spec.requester.user, r.spec.requester.via,
         duration((now - r.created_at).total_seconds()))
        for r in runs
    ]  # fmt: skip
    return "\n".join(table(("NAME", "PLAYBOOK", "PHASE", "REQUESTER", "VIA", "AGE"), rows)) + "\n"
