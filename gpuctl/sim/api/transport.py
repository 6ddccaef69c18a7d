"""SimTransport: KubeApi's requests answered in memory by the demo's simulated API server (server.py).

Bytes in, bytes out, like HttpTransport: the request body is parsed and the
answer serialized, so the engine's whole client path (ApiCall records,
Status errors, watch events) is the one it takes against a real cluster.
Each answer carries an Audit-Id, as kube-apiserver's do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from gpuctl.playbooks.transport import Answer, EventStream, Request
from gpuctl.sim.api.server import Answer as Served
from gpuctl.sim.api.server import SimApiServer, encode
from gpuctl.sim.api.status import ApiError, bad_request

SERVER = "demo://simulated-cluster"


def _headers(served: Served) -> dict[str, str]:
    kind = "text/plain" if isinstance(served.body, str) else "application/json"
    return {"Audit-Id": str(uuid.uuid4()), "Content-Type": kind}


class _Stream:
    def __init__(self, served: Served, events: AsyncIterator[Any] | None) -> None:
        self.status = served.status
        self.headers: Mapping[str, str] = _headers(served)
        self._served = served
        self._events = events

    async def body(self) -> bytes:
        return encode(self._served)

    async def readline(self) -> bytes:
        if self._events is None:
            return b""
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            return b""
        return json.dumps(event).encode() + b"\n"


class SimTransport:
    server = SERVER
    context: str | None = "demo"

    def __init__(self, api: SimApiServer) -> None:
        self.api = api

    def _who_and_body(self, request: Request) -> tuple[Any, Any]:
        who = self.api.access.identity(request.headers, request.headers.getall("Impersonate-Group", []))
        if not request.body:
            return who, None
        try:
            return who, json.loads(request.body)
        except ValueError:
            raise bad_request("the request body is not JSON") from None

    async def send(self, request: Request, *, timeout_s: float) -> Answer:
        try:
            who, body = self._who_and_body(request)
        except ApiError as e:
            served = Served(e.code, e.status())
        else:
            content_type = request.headers.get("Content-Type", "application/json")
            served = self.api.handle(request.method, request.path, request.query, who, body, content_type)
        return Answer(status=served.status, headers=_headers(served), body=encode(served))

    @asynccontextmanager
    async def stream(self, request: Request, *, read_timeout_s: float) -> AsyncIterator[EventStream]:
        who, _ = self._who_and_body(request)
        served, events = self.api.open_watch(request.path, request.query, who)
        stream = _Stream(served, events)
        try:
            yield stream
        finally:
            if events is not None:
                await events.aclose()  # type: ignore[attr-defined]
