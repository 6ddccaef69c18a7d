"""Kubernetes quantities as playbooks read them from objects and show them in plans."""

from __future__ import annotations

from gpuctl.sources.kube.trim import parse_quantity


def quantity(value: object) -> float | None:
    """A quantity field ('8', 8, '1k') as a number; None when absent or not a quantity."""
    try:
        return parse_quantity(value) if value is not None else None
    except ValueError:
        return None


def number(value: float | None) -> int | float | None:
    """A quantity as a person reads it: 8, not 8.0."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value
