"""The simulated cluster's resourceVersions and change log (what etcd's revision is to a real API server).

Every change to an object the simulated API serves takes the next revision;
the object's resourceVersion is the revision of its last change, so a write
pinned to an older one is a Conflict, and a watch from a version sees every
change after it. The log keeps the last `keep` changes: a watch from before
them is told 410 Gone, as etcd compaction would.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
FIRST = 1  # the revision of every object the simulation starts with


@dataclass(frozen=True, slots=True)
class Change:
    revision: int
    resource: str  # e.g. "nodes", "playbookruns.gpuctl.io"
    key: str  # "namespace/name" or "name"
    type: EventType
    object: dict[str, Any] | None = None  # the object as this change left it, when its keeper records that


class TooOld(Exception):
    """The log no longer reaches back to the asked version (a watch must list again)."""


class Revisions:
    def __init__(self, *, keep: int = 20_000) -> None:
        self.current = FIRST
        self._versions: dict[tuple[str, str], int] = {}
        self._log: deque[Change] = deque(maxlen=keep)
        self._waiters: list[asyncio.Future[None]] = []

    def version(self, resource: str, key: str) -> str:
        return str(self._versions.get((resource, key), FIRST))

    def bump(self, resource: str, key: str, type: EventType = "MODIFIED", object: dict[str, Any] | None = None) -> str:
        """Record a change to an object (with its state then, if given: `object`'s resourceVersion is set); its new resourceVersion."""
        self.current += 1
        if type == "DELETED":
            self._versions.pop((resource, key), None)
        else:
            self._versions[(resource, key)] = self.current
        if object is not None:
            object["metadata"]["resourceVersion"] = str(self.current)
        self._log.append(Change(self.current, resource, key, type, object))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return str(self.current)

    def since(self, revision: int, resource: str) -> list[Change]:
        """The changes to `resource` after `revision`, oldest first; TooOld when the log has lost some."""
        if self._log and revision < self._log[0].revision - 1:
            raise TooOld(f"too old resource version: {revision} ({self._log[0].revision - 1})")
        return [c for c in self._log if c.revision > revision and c.resource == resource]

    async def wait(self) -> None:
        """Until the next change (any object)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter
