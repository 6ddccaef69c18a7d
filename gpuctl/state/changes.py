"""What differs between two snapshots, by key, and how to merge change sets.

The TUI redraws only the rows named here. Merging is a union: the changes
A->B merged with B->C name every key that differs between A and C (and maybe a
few that changed back), which is what a consumer that skipped B needs.

Two ways to get the keys (and whether the GPUs are the same ones, in the same
order: a metrics refresh moves every reading and no GPU, and a consumer that
knows it can keep what it derived from the list of GPUs), with the same answer:

* `diff(old, new)` compares every row of both snapshots (O(cluster); for any
  two snapshots);
* a `ChangeLog` remembers, per snapshot the store built, which rows the join
  replaced and what they were before (a `Delta`), so the changes between two
  recent snapshots of one store cost O(rows that changed).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gpuctl.model import Changes, Gpu, Snapshot, gpu_place
from gpuctl.state.frozen import maker

_make_changes = maker(Changes)
EMPTY: frozenset[str] = frozenset()


def changes(
    gpus: frozenset[str] = EMPTY,
    nodes: frozenset[str] = EMPTY,
    pods: frozenset[str] = EMPTY,
    namespaces: frozenset[str] = EMPTY,
    everything: bool = False,
    same_gpus: bool = False,
) -> Changes:
    """`Changes(...)` without re-validating (and copying) thousands of keys."""
    return _make_changes(
        {"gpus": gpus, "nodes": nodes, "pods": pods, "namespaces": namespaces, "everything": everything, "same_gpus": same_gpus}
    )


def same_gpus(old: Iterable[Gpu], new: Iterable[Gpu]) -> bool:
    """Whether both list the same GPUs (node, index, MIG instance: what a key is made of) in the same order."""
    return list(map(gpu_place, old)) == list(map(gpu_place, new))


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
        return self.item.name  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Named) and (self.item is other.item or self.item == other.item)

    def __hash__(self) -> int:
        return hash(self.key)


def diff(old: Snapshot | None, new: Snapshot, *, everything: bool = False) -> Changes:
    """Keys of GPUs, nodes, pods and namespaces that differ from `old` to `new`."""
    if old is None:
        return changes(
            gpus=frozenset(g.key for g in new.gpus),
            nodes=frozenset(n.name for n in new.nodes),
            pods=frozenset(p.key for p in new.pods),
            namespaces=frozenset(n.name for n in new.namespaces),
            everything=True,
        )
    return changes(
        gpus=_changed_keys(old.gpus, new.gpus),
        nodes=_changed_keys(_names(old.nodes), _names(new.nodes)),
        pods=_changed_keys(old.pods, new.pods),
        namespaces=_changed_keys(_names(old.namespaces), _names(new.namespaces)),
        everything=everything,
        same_gpus=same_gpus(old.gpus, new.gpus),
    )


def merge(first: Changes, second: Changes) -> Changes:
    """One change set covering both (for a consumer that missed the snapshot in between)."""
    if first.empty:
        return second
    if second.empty:
        return first
    return changes(
        gpus=first.gpus | second.gpus,
        nodes=first.nodes | second.nodes,
        pods=first.pods | second.pods,
        namespaces=first.namespaces | second.namespaces,
        everything=first.everything or second.everything,
        same_gpus=first.same_gpus and second.same_gpus,  # (not known when GPUs moved and moved back)
    )


# -- change log ---------------------------------------------------------------------------


@dataclass(slots=True)
class Delta:
    """The rows one join replaced: key -> the model it had before (None: the key is new).

    A key is here only if its row is a different object now (the join keeps the
    old object whenever the new row would be equal to it). `gpus_moved`: a GPU
    came, went or changed place in the snapshot's list of GPUs (when False, the
    list names the same GPUs in the same order as before the join).
    """

    gpus: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Any] = field(default_factory=dict)
    pods: dict[str, Any] = field(default_factory=dict)
    namespaces: dict[str, Any] = field(default_factory=dict)
    gpus_moved: bool = False

    def __len__(self) -> int:
        return len(self.gpus) + len(self.nodes) + len(self.pods) + len(self.namespaces)


@dataclass(frozen=True, slots=True)
class Rows:
    """The newest snapshot's rows by key, as the join holds them (the log's 'now')."""

    gpus: Mapping[str, Any]
    nodes: Mapping[str, Any]
    pods: Mapping[str, Any]
    namespaces: Mapping[str, Any]
    repeated_gpus: frozenset[str]  # GPU keys that occur more than once (diff calls those changed)


def _moved(merged: Mapping[str, Any], now: Mapping[str, Any]) -> frozenset[str]:
    out = []
    for key, before in merged.items():
        current = now.get(key)
        if before is current:
            continue
        if before is None or current is None or before != current:
            out.append(key)
    return frozenset(out)


class ChangeLog:
    """Deltas of the last snapshots one store built, to answer `changes(old, new)` cheaply.

    Holds the replaced rows of snapshots not yet asked about (a consumer that skipped
    some), never more than two snapshots' worth (or `budget`, if more): when an answer
    would need more, it is computed with `diff` instead. Snapshots are held weakly;
    rows of snapshots nobody holds any more are dropped. With a hub asking after
    every publish, nothing is held between publishes.
    """

    def __init__(self, budget: int = 1_000) -> None:
        self.budget = budget
        self._entries: list[tuple[weakref.ref[Snapshot], Delta]] = []
        self._held = 0  # rows held in the deltas after the first entry

    def record(self, snapshot: Snapshot, delta: Delta, rows_now: int) -> None:
        """`snapshot` was just built; `delta` is what changed since the previously recorded one."""
        if not self._entries:
            delta = Delta()  # nothing to be relative to: the first entry's delta is never read
        self._entries.append((weakref.ref(snapshot), delta))
        self._held += len(delta)
        # Entries before the oldest snapshot still alive can never be asked about.
        while len(self._entries) > 1 and self._entries[0][0]() is None:
            self._drop_first()
        # Twice the rows: the first metrics batch replaces every placeholder GPU row with rows under
        # other keys (MIG instances), so its delta holds about as many rows gone as rows made.
        while len(self._entries) > 1 and self._held > max(self.budget, 2 * rows_now):
            self._drop_first()

    def forget(self) -> None:
        """The next snapshot does not follow from the last one recorded (the join started over)."""
        self._entries.clear()
        self._held = 0

    def changes(self, old: Snapshot, new: Snapshot, rows: Rows, *, everything: bool = False) -> Changes | None:
        """Changes from `old` to `new` (the last snapshot recorded), or None when the log can't tell."""
        entries = self._entries
        if not entries or entries[-1][0]() is not new:
            return None
        start = next((i for i, (ref, _) in enumerate(entries) if ref() is old), None)
        if start is None:
            return None
        steps = entries[start + 1 :]
        # The joins between say when no GPU moved; when one did, it may have moved back: compare then.
        same = not any(delta.gpus_moved for _, delta in steps) or same_gpus(old.gpus, new.gpus)
        if len(steps) == 1:
            # One join apart: it made a new object only for rows that differ (or came or went).
            only = steps[0][1]
            self._drop_until(new)
            gpus = frozenset(only.gpus)
            return changes(
                gpus=gpus | rows.repeated_gpus if rows.repeated_gpus else gpus,
                nodes=frozenset(only.nodes),
                pods=frozenset(only.pods),
                namespaces=frozenset(only.namespaces),
                everything=everything,
                same_gpus=same,
            )
        merged = Delta()
        for _, delta in steps:
            for mine, theirs in (
                (merged.gpus, delta.gpus),
                (merged.nodes, delta.nodes),
                (merged.pods, delta.pods),
                (merged.namespaces, delta.namespaces),
            ):
                if not mine:
                    mine.update(theirs)
                else:
                    for key, before in theirs.items():
                        mine.setdefault(key, before)  # the first delta after `old` has the row `old` had
        self._drop_until(new)
        gpus = _moved(merged.gpus, rows.gpus)
        if rows.repeated_gpus:
            gpus |= rows.repeated_gpus
        return changes(
            gpus=gpus,
            nodes=_moved(merged.nodes, rows.nodes),
            pods=_moved(merged.pods, rows.pods),
            namespaces=_moved(merged.namespaces, rows.namespaces),
            everything=everything,
            same_gpus=same,
        )

    def _drop_until(self, new: Snapshot) -> None:
        """The consumer now holds `new`: what came before it is not needed any more."""
        while self._entries[0][0]() is not new:
            self._drop_first()

    def _drop_first(self) -> None:
        self._entries.pop(0)
        if self._entries:
            ref, delta = self._entries[0]
            self._held -= len(delta)
            self._entries[0] = (ref, Delta())  # now the first: its rows before are not needed
