"""Which GPU devices on which node are free, and first-fit allocation of them.

Devices are the leaves pods are given: whole GPUs, or MIG instances on a
MIG node. The device plugin hands out the lowest free ones first, and so
does this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class _Device(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def resource(self) -> str: ...


class _Node(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def gpus(self) -> tuple[_Device, ...]: ...


class Allocator:
    """Free devices per node and resource; take() and release() keep it current."""

    def __init__(self, nodes: Iterable[_Node]) -> None:
        self._free: dict[str, dict[str, list[str]]] = {}
        self._order: dict[str, int] = {}
        self._resource: dict[str, str] = {}
        for node in nodes:
            self.set_node(node)

    def set_node(self, node: _Node, held: Iterable[str] = ()) -> None:
        """Add a node, or replace its devices (a MIG reconfiguration); `held` are given out already."""
        per_resource: dict[str, list[str]] = {}
        for i, gpu in enumerate(node.gpus):
            per_resource.setdefault(gpu.resource, []).append(gpu.key)
            self._order[gpu.key] = i
            self._resource[gpu.key] = gpu.resource
        self._free[node.name] = per_resource
        self.take_keys(node.name, held)

    def fits(self, node: str, requests: Mapping[str, int]) -> bool:
        free = self._free.get(node, {})
        return all(len(free.get(resource, ())) >= count for resource, count in requests.items() if count)

    def take(self, node: str, requests: Mapping[str, int]) -> tuple[str, ...] | None:
        """The keys given to a pod requesting `requests` on `node`, or None if they are not free."""
        if not self.fits(node, requests):
            return None
        taken: list[str] = []
        free = self._free[node]
        for resource, count in requests.items():
            taken += free[resource][:count]
            del free[resource][:count]
        return tuple(taken)

    def take_keys(self, node: str, keys: Iterable[str]) -> None:
        """Mark devices already given out (a pod that is running when the simulation starts)."""
        free = self._free[node]
        for key in keys:
            free[self._resource[key]].remove(key)

    def release(self, node: str, keys: Iterable[str]) -> None:
        free = self._free[node]
        for key in keys:
            pool = free.setdefault(self._resource[key], [])
            pool.append(key)
            pool.sort(key=self._order.__getitem__)

    def first_fit(self, nodes: Iterable[str], requests: Mapping[str, int]) -> str | None:
        return next((n for n in nodes if self.fits(n, requests)), None)

    def max_free(self, nodes: Iterable[str]) -> dict[str, int]:
        """The most free devices of each resource on any one of `nodes`."""
        most: dict[str, int] = {}
        for node in nodes:
            for resource, keys in self._free[node].items():
                if len(keys) > most.get(resource, 0):
                    most[resource] = len(keys)
        return most

    def free_keys(self, node: str) -> tuple[str, ...]:
        return tuple(sorted((k for keys in self._free[node].values() for k in keys), key=self._order.__getitem__))
