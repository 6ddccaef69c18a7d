"""Text renderings of playbook definitions: `gpuctl playbook list` and `gpuctl playbook show NAME`.

Plain text with fixed-width columns, like the snapshot summary; `--json` prints
the models instead (durations there are seconds).
"""

from __future__ import annotations

import textwrap
from typing import Any

from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.spec import ACTIONS, CHECK_TEXT, SELECTOR_TEXT, Guardrails, Playbook, spell_duration
from gpuctl.render.summary import table

WIDTH = 100


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0].rstrip(".")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def list_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """What `playbook list --json` prints, one object per playbook."""
    return [
        {
            "name": p.name,
            "description": p.description,
            "approval_required": p.approval.required,
            "reversible": p.reversible,
            "source": catalog.sources[p.name],
        }
        for p in catalog
    ]


def render_list(catalog: Catalog) -> str:
    rows = [(p.name, "required" if p.approval.required else "-", _yes(p.reversible), _first_sentence(p.description))
            for p in catalog]  # fmt: skip
    return "\n".join(table(("NAME", "APPROVAL", "REVERSIBLE", "DESCRIPTION"), rows)) + "\n"


def _parameter_lines(playbook: Playbook) -> list[str]:
    if not playbook.parameters:
        return ["(none)"]
    rows = []
    for name, param in playbook.parameters.items():
        default = getattr(param, "default", None)
        shown = "-" if default is None else param.show(default)
        needs = f" (needs {', '.join(param.requires)})" if param.requires else ""
        rows.append((name, param.label(), shown, _yes(param.required), param.help + needs))
    lines = table(("NAME", "TYPE", "DEFAULT", "REQUIRED", "HELP"), rows)
    lines += [f"exactly one of: {', '.join(group)}" for group in playbook.exactly_one_of]
    return lines


def _guardrail_lines(rails: Guardrails) -> list[str]:
    limits: list[tuple[str, str, str]] = []
    for name in ("max_pods", "max_gpus", "max_nodes", "min_pod_age", "deadline"):
        value = getattr(rails, name)
        if value is not None:
            shown = spell_duration(value) if isinstance(value, float) else str(value)
            limits.append((name, shown, Guardrails.model_fields[name].description or ""))
    lines = table(("LIMIT", "VALUE", "MEANING"), limits)
    protected = rails.protected
    for label, items in (
        ("protected namespaces", protected.namespaces),
        ("protected priority classes", protected.priority_classes),
        ("opt-out", tuple(str(o) for o in protected.opt_out)),
    ):
        if items:
            lines.append(f"{label}: {', '.join(items)}")
    if protected.namespaces or protected.priority_classes or protected.opt_out:
        lines.append("protected objects are " + ("skipped" if protected.on_match == "skip" else "a reason to refuse the plan"))
    if rails.checks:
        lines.append("checks:")
        lines += ["  " + line for line in table(("CHECK", "WHAT IT KEEPS"), [(c.value, CHECK_TEXT[c]) for c in rails.checks])[1:]]
    return lines


def render_show(playbook: Playbook, source: str) -> str:
    approval = "not required"
    if playbook.approval.required:
        approval = f"required, lapses after {spell_duration(playbook.approval.expires_after)}"
    target = playbook.target
    out = [
        f"{playbook.name}  ({source})",
        *textwrap.wrap(playbook.description, WIDTH, initial_indent="  ", subsequent_indent="  "),
        "",
        f"approval: {approval}",
        f"reversible: {_yes(playbook.reversible)}",
        f"target: {target.select.value}: {SELECTOR_TEXT[target.select]}",
        f"  chosen by: {', '.join(target.by) or '-'}; policy scope: {', '.join(target.scopes)}",
        "",
        "PARAMETERS",
        *_parameter_lines(playbook),
        "",
        "GUARDRAILS",
        *_guardrail_lines(playbook.guardrails),
        "",
        "PERMISSIONS (performed as the requester, pre-checked with SelfSubjectAccessReview)",
        *(f"  {p}{'' if p.namespaced else ' (cluster-scoped)'}" for p in playbook.permissions),
        "",
        "ACTIONS",
        *("  " + line for line in table(("ACTION", "WHAT IT DOES"), [(a.value, ACTIONS[a][0]) for a in playbook.actions])[1:]),
    ]
    return "\n".join(out) + "\n"
