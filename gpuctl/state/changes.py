"""What differs between two snapshots, by key, and how to merge change sets.

The TUI redraws only the rows named here. Merging is a union: the changes
A->B merged with B->C name every key that differs between A and C (and maybe a
few that changed back), which is what a consumer that skipped B needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from gpuctl.model import Changes, Snapshot


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


def _changed_keys(old: Iterable[K], new: Iterable[K]) -> frozenset[str]:
    before = {item.key: item for item in old}
    changed: set[str] = set()
    for item in new:
        previous = before.pop(item.key, None)
        # Identity first: the join reuses unchanged objects, so most checks end here.
        if previous is None or (previous is not item and previous != item):
            changed.add(item.key)
    changed.update(before)  # keys that disappeared
    return frozenset(changed)


def _names(items: Iterable[object]) -> list[_Named]:
    return [_Named(item) for item in items]


class _Named:
    """Adapts models keyed by `.name` (Node, NamespaceUsage) to the `.key` protocol."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    @property
    def key(self) -> str:
        return self.item.name  # type: ignore[attr-defined,no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Named) and (self.item is other.item or self.item == other.item)

    def __hash__(self) -> int:
        return hash(self.key)


def diff(old: Snapshot | None, new: Snapshot, *, everything: bool = False) -> Changes:
    """Keys of GPUs, nodes, pods and namespaces that differ from `old` to `new`."""
    if old is None:
        return Changes(
            gpus=frozenset(g.key for g in new.gpus),
            nodes=frozenset(n.name for n in new.nodes),
            pods=frozenset(p.key for p in new.pods),
            namespaces=frozenset(n.name for n in new.namespaces),
            everything=True,
        )
    return Changes(
        gpus=_changed_keys(old.gpus, new.gpus),
        nodes=_changed_keys(_names(old.nodes), _names(new.nodes)),
        pods=_changed_keys(old.pods, new.pods),
        namespaces=_changed_keys(_names(old.namespaces), _names(new.namespaces)),
        everything=everything,
    )


def merge(first: Changes, second: Changes) -> Changes:
    """One change set covering both (for a consumer that missed the snapshot in between)."""
    if first.empty:
        return second
    if second.empty:
        return first
    return Changes(
        gpus=first.gpus | second.gpus,
        nodes=first.nodes | second.nodes,
        pods=first.pods | second.pods,
        namespaces=first.namespaces | second.namespaces,
        everything=first.everything or second.everything,
    )
