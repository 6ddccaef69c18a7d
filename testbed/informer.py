"""List-then-watch for the test bed's own controllers (MIG manager simulator,
Cluster API provider): the stream of changes client-go's informer hands its
event handlers, with the previous version of each object.

A watch that ends normally is resumed from the last resourceVersion; an expired
one (410) or a broken connection is followed by a fresh list, and the
differences from what was known come out as ADDED/MODIFIED/DELETED, so no
change is lost across an API server restart. No periodic resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from testbed.kube import RestClient

log = logging.getLogger(__name__)

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Change:
    type: ChangeType
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the version known before (None for ADDED)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def _key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class _Relist(Exception):
    """The watch cannot be resumed: list again."""


async def changes(
    client: RestClient,
    kind: str,
    namespace: str | None = None,
    *,
    retry_s: float = 0.5,
    **selector: str,
) -> AsyncIterator[Change]:
    """Every change to `kind` objects, forever; `selector` holds `labelSelector`
    and/or `fieldSelector` query parameters."""
    known: dict[Key, dict[str, Any]] = {}
    while True:
        try:
            listing = await client.list(kind, namespace, **selector)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("listing %s failed (%s); retrying", kind, exc)
            await asyncio.sleep(retry_s)
            continue
        if listing.status != 200:
            log.info("listing %s: %s %s; retrying", kind, listing.status, listing.body.get("message"))
            await asyncio.sleep(retry_s)
            continue
        current = {_key(obj): obj for obj in listing.body.get("items", [])}
        for key in sorted(known.keys() - current.keys()):
            yield Change("DELETED", known.pop(key), None)
        for key, obj in current.items():
            old = known.get(key)
            known[key] = obj
            if old is None:
                yield Change("ADDED", obj, None)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                yield Change("MODIFIED", obj, old)
        version = listing.body["metadata"]["resourceVersion"]
        try:
            while True:
                async for event in client.watch(kind, namespace, resource_version=version, **selector):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise _Relist(obj.get("message"))
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    key = _key(obj)
                    if event["type"] == "DELETED":
                        known.pop(key, None)
                        yield Change("DELETED", obj, None)
                    else:
                        old = known.get(key)
                        known[key] = obj
                        yield Change("ADDED" if old is None else "MODIFIED", obj, old)
        except (TimeoutError, _Relist, aiohttp.ClientError) as exc:
            log.info("watch on %s ended (%s); listing again", kind, exc)
            await asyncio.sleep(retry_s)


class History:
    """Every version of one object a watch delivered, oldest first: for asserting
    on transitions too quick to poll for (a state that was `pending` for 0.3 s)."""

    def __init__(self) -> None:
        self.versions: list[dict[str, Any]] = []

    def label(self, key: str) -> list[str | None]:
        """The label's successive values (repeats collapsed)."""
        values: list[str | None] = []
        for version in self.versions:
            value = version["metadata"].get("labels", {}).get(key)
            if not values or values[-1] != value:
                values.append(value)
        return values


@asynccontextmanager
async def history(client: RestClient, kind: str, name: str, namespace: str | None = None) -> AsyncIterator[History]:
    """Record `History` of an existing object while the block runs."""
    recorded = History()
    seen = asyncio.Event()

    async def record() -> None:
        async for change in changes(client, kind, namespace, fieldSelector=f"metadata.name={name}"):
            recorded.versions.append(change.obj)
            seen.set()

    task = asyncio.create_task(record(), name=f"history/{kind}/{name}")
    first = asyncio.create_task(seen.wait())
    try:
        await asyncio.wait({task, first}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # what broke the recording
        if not first.done():
            raise TimeoutError(f"no {kind} {name} to record within 30 s")
        yield recorded
    finally:
        first.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
