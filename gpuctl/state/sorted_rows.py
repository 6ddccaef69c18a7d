"""Rows kept sorted by key for the incremental join (join.py), remade as a tuple only when something moved."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Generic, TypeVar

M = TypeVar("M")


class SortedRows(Generic[M]):
    """Rows kept sorted by key, with their tuple remade only when something moved."""

    def __init__(self) -> None:
        self.by_key: dict[str, M] = {}
        self._keys: list[str] = []
        self._rows: list[M] = []
        self._tuple: tuple[M, ...] = ()
        self._joined: set[str] = set()
        self._left: set[str] = set()
        self._updated: set[str] = set()

    def get(self, key: str) -> M | None:
        return self.by_key.get(key)

    def set(self, key: str, row: M) -> None:
        if key not in self.by_key:
            if key in self._left:
                self._left.discard(key)
                self._updated.add(key)
            else:
                self._joined.add(key)
        else:
            self._updated.add(key)
        self.by_key[key] = row

    def remove(self, key: str) -> None:
        del self.by_key[key]
        if key in self._joined:
            self._joined.discard(key)
        else:
            self._left.add(key)
        self._updated.discard(key)

    def as_tuple(self) -> tuple[M, ...]:
        joined, left, updated = self._joined, self._left, self._updated
        if not (joined or left or updated):
            return self._tuple
        keys, rows, by_key = self._keys, self._rows, self.by_key
        if len(joined) + len(left) > 64:  # many keys came or went (a list): sort once
            keys[:] = sorted(by_key)
            rows[:] = [by_key[k] for k in keys]
        else:
            for key in left:
                i = bisect_left(keys, key)
                del keys[i], rows[i]
            for key in joined:
                i = bisect_left(keys, key)
                keys.insert(i, key)
                rows.insert(i, by_key[key])
            if len(updated) > len(keys) // 8:
                rows[:] = [by_key[k] for k in keys]
            else:
                for key in updated:
                    rows[bisect_left(keys, key)] = by_key[key]
        joined.clear()
        left.clear()
        updated.clear()
        self._tuple = tuple(rows)
        return self._tuple


def replace_row(rows: SortedRows[Any], key: str, values: dict[str, Any] | None, make: Any, delta: dict[str, Any]) -> Any:
    """Put the row made of `values` (None: no row) under `key`, keeping the old object if equal."""
    old = rows.get(key)
    if values is None:
        if old is not None:
            rows.remove(key)
            delta.setdefault(key, old)
        return None
    if old is not None and old.__dict__ == values:
        return old
    new = make(values)
    rows.set(key, new)
    delta.setdefault(key, old)
    return new
