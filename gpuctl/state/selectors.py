"""Kubernetes label selectors (`metav1.LabelSelector`), parsed once and matched exactly.

The same rules as apimachinery's `LabelSelectorAsSelector`: `matchLabels` entries
are equality terms; `matchExpressions` use In and NotIn (with one or more
values) and Exists and DoesNotExist (with none); every term must hold. NotIn and
DoesNotExist hold for a label that is absent. An empty selector (`{}`) matches
everything, a missing one (`null`) nothing; a selector apimachinery would refuse
(unknown operator, wrong number of values) is an error here too, and whoever
uses it decides what that means (the Eviction API: it matches no pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "=", "In", "NotIn", "Exists", "DoesNotExist"
_WITH_VALUES = frozenset({IN, NOT_IN})
_WITHOUT_VALUES = frozenset({EXISTS, DOES_NOT_EXIST})


class InvalidSelector(ValueError):
    """A selector the API server would not turn into a label selector either."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "=" (from matchLabels), In, NotIn, Exists, DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if op == NOT_IN:
            return value is None or value not in self.values
        return value is not None and value in self.values  # "=" and In

    def __str__(self) -> str:
        """As kubectl prints it: app=x, tier in (a,b), tier notin (c), gpu, !spot."""
        values = ",".join(sorted(self.values))
        match self.operator:
            case "=":
                return f"{self.key}={values}"
            case "In":
                return f"{self.key} in ({values})"
            case "NotIn":
                return f"{self.key} notin ({values})"
            case "Exists":
                return self.key
            case _:
                return f"!{self.key}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(map(str, self.requirements))


def parse_selector(obj: Mapping[str, Any] | None) -> LabelSelector | None:
    """A `metav1.LabelSelector` from API JSON; None for a missing (null) selector.

    Raises InvalidSelector for one apimachinery refuses: an unknown operator, In/NotIn
    without values, Exists/DoesNotExist with values, a non-string key or value.
    """
    if obj is None:
        return None
    requirements: list[Requirement] = []
    for key, value in (obj.get("matchLabels") or {}).items():
        if not isinstance(value, str):
            raise InvalidSelector(f"matchLabels {key!r}: value {value!r} is not a string")
        requirements.append(Requirement(key, EQUALS, frozenset((value,))))
    for expr in obj.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or ()
        if not isinstance(key, str) or not key:
            raise InvalidSelector(f"matchExpressions: key {key!r} is not a label key")
        if op in _WITH_VALUES and not values:
            raise InvalidSelector(f"matchExpressions {key!r}: operator {op} needs at least one value")
        if op in _WITHOUT_VALUES and values:
            raise InvalidSelector(f"matchExpressions {key!r}: operator {op} takes no values")
        if op not in _WITH_VALUES and op not in _WITHOUT_VALUES:
            raise InvalidSelector(f"matchExpressions {key!r}: {op!r} is not a label selector operator")
        if not all(isinstance(v, str) for v in values):
            raise InvalidSelector(f"matchExpressions {key!r}: values {values!r} are not all strings")
        requirements.append(Requirement(key, op, frozenset(values)))
    requirements.sort(key=lambda r: r.key)  # the order apimachinery prints them in
    return LabelSelector(tuple(requirements))
