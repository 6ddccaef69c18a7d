"""List-then-watch one resource into the store, forever, exactly.

The classic reflector loop, on raw JSON (no generated models: at 10,000 pods
deserialising V1Pod objects costs more than everything else together):

1. LIST, `page_size` objects a page, following continue tokens (every page is
   read at the first page's resourceVersion; the next page is asked for as soon
   as a page's first bytes, its metadata, name the token, so the API server
   prepares it while this one is read) -> `store.replace(kind, ...)` once
   the last page is in: an exact replacement, so objects deleted while we were
   away cannot linger as ghosts, and a list that fails half-way replaces nothing;
2. WATCH from the list's resourceVersion with bookmarks (the server sends one
   shortly before `timeout_seconds` and about once a minute, carrying its
   current resourceVersion, which keeps ours fresh on a quiet resource);
   ADDED/MODIFIED -> upsert (or delete when the object no longer matters to
   gpuctl), DELETED -> delete;
3. the server ends the watch after `timeout_seconds`: watch again from the last
   version seen; a dropped connection: same, after a backoff;
4. 410 Gone — the watch's resourceVersion, or a continue token, is older than
   the history the server keeps (etcd compaction, an API server restart):
   back to 1, from scratch. A watch's first 410 relists at once; a 410 within
   `relist_backoff.cap` seconds of the previous one waits, exponentially and
   jittered, so a struggling API server that keeps expiring versions is not
   met with a relist storm. An expired continue token always waits: the list
   took longer than the server keeps history, and would likely again. While
   it waits, health says disconnected with the retry time; relists are counted.

An object that `trim` cannot read (an unexpected error: an odd object or a bug)
is left out of the store, logged once with its key and counted in `skipped`;
the watch goes on. Any other unexpected error stops the reflector: it reports
itself `crashed` (its health turns disconnected) and raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import ClusterError, Unauthorized
from gpuctl.sources.base import Backoff, describe_crash
from gpuctl.sources.kube.connect import HttpError, ListCall
from gpuctl.sources.kube.trim import JSON, object_key
from gpuctl.sources.kube.wire import Decoders
from gpuctl.state.records import Kind, Record
from gpuctl.state.store import ClusterStore

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# What a list or watch can raise when the network or the server misbehaves; anything else is a bug.
TRANSIENT = (aiohttp.ClientError, OSError, TimeoutError, asyncio.TimeoutError, json.JSONDecodeError, ValueError)


class Gone(Exception):
    """410: the resourceVersion (or continue token) is too old; list again."""


@dataclass(frozen=True, slots=True)
class Resource:
    kind: Kind
    plural: str  # "pods", for messages
    list_call: ListCall  # a raw aiohttp response for query parameters: KubeConnection.lister("/api/v1/pods")
    trim: Callable[[JSON], Record | None]
    wire: type | None = None  # what `trim` reads (gpuctl.sources.kube.wire): decoded alone; None: all of it
    required: bool = True  # optional kinds (quotas, namespaces) degrade to empty when forbidden


HealthCallback = Callable[["Reflector"], None]



class Reflector:
    def __init__(
        self,
        resource: Resource,
        store: ClusterStore,
        *,
        describe: Callable[[BaseException, str], ClusterError],
        on_health: HealthCallback,
        backoff: Backoff | None = None,
        relist_backoff: Backoff | None = None,
        page_size: int = PAGE_SIZE,
        watch_timeout_s: tuple[int, int] = (240, 360),
        clock: Clock = utcnow,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.resource = resource
        self._decode = Decoders.of(resource.wire)
        self.store = store
        self._describe = describe
        self._on_health = on_health
        self._backoff = backoff or Backoff()
        self._relist_backoff = relist_backoff or Backoff(base=1.0, cap=60.0)
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._clock = clock
        self._gone_at: float | None = None  # loop time of the latest 410
        self.resource_version: str | None = None
        self.connected = False
        self.error: ClusterError | None = None
        self.retry_at: datetime | None = None  # when the next attempt starts, while backing off after a failure
        self.lists = 0
        self.events = 0
        self.bookmarks = 0
        self.crashed: str | None = None  # the unexpected error that stopped run(), as one line
        self.skipped: set[str] = set()  # keys of objects whose latest version trim could not read
        self._logged_skips: set[str] = set()  # each such object is logged once, not at every event

    @property
    def relists(self) -> int:
        return max(0, self.lists - 1)

    def _health(self, *, connected: bool, error: ClusterError | None, retry_at: datetime | None = None) -> None:
        if connected != self.connected or error is not self.error or retry_at != self.retry_at:
            self.connected, self.error, self.retry_at = connected, error, retry_at
            self._on_health(self)

    async def run(self) -> None:
        """Until cancelled. Never raises for outages: they become health reports and retries.

        An unexpected error (a bug) is reported as `crashed`, disconnected, and raised."""
        try:
            await self._run()
        except Exception as e:
            self.crashed = describe_crash(e)
            self.connected, self.retry_at = False, None
            self._on_health(self)
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                # A normal end of a watch (server timeout). One that ends at once, over and over,
                # must not spin: back off unless it lasted a while.
                if loop.time() - started < 5:
                    await asyncio.sleep(self._backoff.next())
                else:
                    self._backoff.reset()
            except Gone as e:
                await self._relist_after_gone(e)
            except (HttpError, ClusterError, *TRANSIENT) as e:  # ClusterError: no credential could be had
                await self._failed(e)

    async def _relist_after_gone(self, gone: Gone) -> None:
        """Forget the expired version and list again, at once or after a wait (module docstring, 4)."""
        listing = self.resource_version is None  # a list sets its version when its last page is in
        expired = "the list's continue token" if listing else f"resourceVersion {self.resource_version}"
        self.resource_version = None
        now = asyncio.get_running_loop().time()
        recent = self._gone_at is not None and now - self._gone_at < self._relist_backoff.cap
        self._gone_at = now
        if not recent:
            self._relist_backoff.reset()
            if not listing:
                log.info("%s: %s expired (%s), listing again", self.resource.plural, expired, gone)
                return
        delay = self._relist_backoff.next()
        log.warning("%s: %s expired (%s); listing again in %.1f s", self.resource.plural, expired, gone, delay)
        self._health(connected=False, error=None, retry_at=self._clock() + timedelta(seconds=delay))
        await asyncio.sleep(delay)

    async def _failed(self, e: BaseException) -> None:
        error = self._describe(e, self.resource.plural)
        log.warning("%s: %s", self.resource.plural, error)
        if isinstance(error, Unauthorized) and not self.resource.required and self.resource.kind not in self.store.listed:
            # Not allowed to see quotas/namespaces: show none rather than hold the whole picture back.
            self.store.replace(self.resource.kind, [])
        delay = self._backoff.next()
        if isinstance(error, Unauthorized):
            delay = max(delay, 30.0)  # RBAC and credentials change slowly; don't hammer
        self._health(connected=False, error=error, retry_at=self._clock() + timedelta(seconds=delay))
        await asyncio.sleep(delay)

    async def _request(self, **params: Any) -> aiohttp.ClientResponse:
        resp = await self.resource.list_call(**params)
        if resp.status == 200:
            return resp
        try:
            body = await resp.text()
        finally:
            resp.release()
        message = body
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            pass
        if resp.status == 410:
            raise Gone(message)
        raise HttpError(resp.status, str(message)[:300])

    async def _list(self) -> None:
        records: list[Record] = []
        unreadable: set[str] = set()  # the list says afresh which objects are
        ahead: asyncio.Future[aiohttp.ClientResponse] | None = asyncio.ensure_future(self._page(None))
        try:
            while ahead is not None:
                resp, ahead = await ahead, None
                try:
                    # The list's metadata comes ahead of its items: ask for the next page now, and the API
                    # server reads and encodes it while this one is read and trimmed (at 10,000 pods, 20
                    # pages whose server time no longer adds up).
                    head = await _head(resp)
                    seen = _continue_token(head)
                    if seen is not None:
                        ahead = asyncio.ensure_future(self._page(seen))
                    body = self._decode.page(head + await resp.read())
                finally:
                    resp.release()
                for obj in body.get("items") or ():
                    record, readable = self._trim(obj)
                    if not readable:
                        unreadable.add(_safe_key(obj))
                    elif record is not None:
                        records.append(record)
                meta = body.get("metadata") or {}
                token = meta.get("continue") or None
                if token != seen:  # not what the first bytes said (or not found there): the list's own word
                    _discard(ahead)
                    ahead = asyncio.ensure_future(self._page(token)) if token else None
        finally:
            _discard(ahead)  # asked for ahead of a list that failed: nobody reads it
        self.skipped = unreadable
        self.store.replace(self.resource.kind, records)
        self.resource_version = meta.get("resourceVersion")
        self.lists += 1
        self.connected, self.error, self.retry_at = True, None, None
        self._on_health(self)  # always: the relist count moved
        self._backoff.reset()

    async def _page(self, token: str | None) -> aiohttp.ClientResponse:
        """The list's page after `token` (the first page for None): its response, the body not read yet."""
        params: dict[str, Any] = {
            "limit": self._page_size,
            "_request_timeout": aiohttp.ClientTimeout(total=120, sock_connect=10),
        }
        if token:
            params["_continue"] = token
        return await self._request(**params)

    async def _watch(self) -> None:
        timeout = random.randint(*self._watch_timeout_s)
        resp = await self._request(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            # No total timeout: the server ends the watch; sock_read catches a silently dead connection.
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout + 30),
        )
        self._health(connected=True, error=None)
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    return  # the server closed the watch
                if line.strip():
                    self._apply(self._decode.event(line))
        finally:
            resp.close()

    def _apply(self, event: JSON) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(obj.get("message", "resource version too old"))
            raise HttpError(int(code or 500), str(obj.get("message", "watch error")))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.bookmarks += 1
            self.resource_version = version or self.resource_version
            return
        self.events += 1
        if kind == "DELETED":
            self._set_skipped(obj, False)
            self.store.delete(self.resource.kind, object_key(obj))
        else:
            record, readable = self._trim(obj)
            self._set_skipped(obj, not readable)
            if record is None:
                # Stopped matching (or never did), or unreadable now: either way its old record is not the truth.
                self.store.delete(self.resource.kind, object_key(obj))
            else:
                self.store.upsert(record)
        self.resource_version = version or self.resource_version

    def _trim(self, obj: JSON) -> tuple[Record | None, bool]:
        """(`resource.trim(obj)`, True); (None, False) when trim raised, logged once per object."""
        try:
            return self.resource.trim(obj), True
        except Exception as e:  # one odd object (or a trim bug) must neither stop the watch nor pass for an outage
            key = _safe_key(obj)
            if key not in self._logged_skips:
                self._logged_skips.add(key)
                log.error("%s: left out %s, which gpuctl could not read: %s", self.resource.plural, key, describe_crash(e))
            return None, False

    def _set_skipped(self, obj: JSON, skipped: bool) -> None:
        if not skipped and not self.skipped:
            return  # the common case: nothing skipped, nothing to look up
        key = _safe_key(obj)
        if skipped != (key in self.skipped):
            if skipped:
                self.skipped.add(key)
            else:
                self.skipped.discard(key)
            self._on_health(self)


_HEAD_BYTES = 16384  # the list's kind, apiVersion and metadata fit in far less; items start after them
_CONTINUE = re.compile(rb'"continue":"([^"\\]+)"')


async def _head(resp: aiohttp.ClientResponse) -> bytes:
    """The body's first bytes, up to where the items begin (or _HEAD_BYTES, or its end)."""
    head = b""
    while b'"items"' not in head and len(head) < _HEAD_BYTES:
        chunk = await resp.content.read(_HEAD_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _discard(page: asyncio.Future[aiohttp.ClientResponse] | None) -> None:
    """Drop a page asked for and not read: cancelled if still on its way, its connection let go if in."""
    if page is None:
        return
    if not page.done():
        page.cancel()
    elif not page.cancelled() and page.exception() is None:
        page.result().release()


def _continue_token(head: bytes) -> str | None:
    """The continue token in a list's metadata, from the body's first bytes; None where it is not there."""
    metadata = head.split(b'"items"', 1)[0]
    match = _CONTINUE.search(metadata)
    return match.group(1).decode() if match else None


def _safe_key(obj: Any) -> str:
    """The object's namespace/name for messages; something printable even for a malformed object."""
    try:
        return object_key(obj)
    except Exception:
        return f"<unreadable {type(obj).__name__}>"
