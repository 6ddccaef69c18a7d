"""The `/` filter: a tiny query language every view (and the bot) understands.

`ns:team-a pool:a100 h100` keeps things whose namespace contains "team-a",
whose pool contains "a100" and where any field contains "h100". Terms are
ANDed, matching is case-insensitive substring matching: what people type in
k9s without reading a manual.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELDS: dict[str, str] = {
    "ns": "namespace",
    "namespace": "namespace",
    "pool": "pool",
    "node": "node",
    "pod": "pod",
    "model": "model",
}


@dataclass(frozen=True, slots=True)
class Facets:
    """The searchable fields of one row; empty string where a field doesn't apply."""

    namespace: str = ""
    pool: str = ""
    node: str = ""
    pod: str = ""
    model: str = ""

    def get(self, field: str) -> str:
        return str(getattr(self, field))


@dataclass(frozen=True, slots=True)
class Filter:
    text: str = ""
    terms: tuple[tuple[str | None, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Filter:
        terms: list[tuple[str | None, str]] = []
        for word in text.split():
            name, sep, value = word.partition(":")
            if sep and name.lower() in FIELDS:
                if value:
                    terms.append((FIELDS[name.lower()], value.lower()))
            else:
                terms.append((None, word.lower()))
        return cls(text=text.strip(), terms=tuple(terms))

    @property
    def active(self) -> bool:
        return bool(self.terms)

    def fields(self) -> frozenset[str]:
        return frozenset(f for f, _ in self.terms if f is not None)

    def matches(self, facets: Facets, *, applies: frozenset[str] | None = None) -> bool:
        """True when every term matches.

        `applies` names the fields this kind of row has; a term on another field
        is ignored (a quota row has no node, so `node:x` doesn't hide quotas).
        """
        for field, value in self.terms:
            if field is None:
                haystack = (facets.namespace, facets.pool, facets.node, facets.pod, facets.model)
                if not any(value in h.lower() for h in haystack):
                    return False
            elif applies is not None and field not in applies:
                continue
            elif value not in facets.get(field).lower():
                return False
        return True
