"""User-supplied parameter values, checked against a playbook before anything else sees them.

Values arrive as text from `-p key=value` on the CLI, from Slack messages and
from alert labels; `validate_params` turns them into typed values within the
declared bounds, or raises one ParameterError that lists every problem and
what is allowed. Nothing else raises: arbitrary text, control characters and
absurd numbers included (a hypothesis test holds it to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gpuctl.errors import ParameterError
from gpuctl.playbooks.spec import ParamValue, Playbook

Arguments = dict[str, ParamValue | None]
_SHOWN = 60  # characters of a rejected value quoted back


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "…")


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`["max_pods=5", "namespace=team-a"]` → a dict; a missing '=', an empty key or a key given twice is an error."""
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"{_quoted(item)} is not key=value", hint="write each parameter as -p name=value")
        if key in given:
            raise ParameterError(f"parameter {_quoted(key)} is given twice", hint="give each parameter once")
        given[key] = value
    return given


def validate_params(playbook: Playbook, given: Mapping[object, object]) -> Arguments:
    """Every declared parameter's value (defaults filled in, None for an optional one left out), or ParameterError.

    Checks, in order: keys are known parameter names; each value parses as its
    type and lies within its bounds, pattern or choices; required ones are
    present; `requires` and `exactly_one_of` hold. All problems are reported
    together.
    """
    params = playbook.parameters
    problems: list[str] = []
    values: Arguments = {}
    for key, text in given.items():
        param = params.get(key) if isinstance(key, str) else None
        if param is None or not isinstance(key, str):
            known = ", ".join(params) or "none"
            problems.append(f"{playbook.name} has no parameter {_quoted(str(key))} (parameters: {known})")
        elif not isinstance(text, str):
            problems.append(f"{key} must be given as text, not {type(text).__name__}")
        else:
            try:
                values[key] = param.parse(text)
            except ValueError as e:
                problems.append(f"{key}={_quoted(text)} {e} (expected {param.allowed()})")
    for name, param in params.items():
        if name in values:
            continue
        if param.required and name not in given:
            problems.append(f"{playbook.name} needs parameter {name}: {param.allowed()} — {param.help}")
        values.setdefault(name, getattr(param, "default", None))
    for name, param in params.items():
        for other in param.requires:
            if name in given and other not in given:
                problems.append(f"{name} needs {other} as well")
    for group in playbook.exactly_one_of:
        present = [name for name in group if name in given]
        if len(present) != 1:
            problems.append(f"give exactly one of {', '.join(group)} (got {', '.join(present) or 'none'})")
    if problems:
        raise ParameterError("; ".join(problems), hint=f"`gpuctl playbook show {playbook.name}` lists the parameters")
    return values
