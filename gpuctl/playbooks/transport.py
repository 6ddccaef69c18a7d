"""How a KubeApi request reaches an API server: the one seam between the engine and "the cluster".

`KubeApi` (kubeapi.py) builds every request (path, query, impersonation
headers, JSON body) and interprets every answer (ApiCall, Status errors,
watch events); a Transport only carries bytes:

- `HttpTransport`: a real API server, over the KubeConnection's aiohttp
  session (its TLS setup, proxy and credentials, exec-plugin tokens
  refreshed when they expire). No answer at all becomes a ClusterError; no
  credential (a failing exec plugin) is the connection's Unauthorized.
- `gpuctl.sim.api.SimTransport`: the demo's in-memory API server, which
  answers the same requests with the same status codes and Status bodies.

So everything above this line (ActingClient, PlaybookRuns, Leases, the
playbooks) is the same code against a real cluster and in `--demo`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

from gpuctl.errors import ClusterError
from gpuctl.sources.kube.connect import KubeConnection, describe

# What a request raises when no answer came: mapped to ClusterUnreachable (anything else is a bug).
_NO_ANSWER = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # e.g. /api/v1/namespaces/a/pods/p, without the query
    query: Mapping[str, str]
    headers: CIMultiDict[str]  # Impersonate-User, one Impersonate-Group per group, Accept, Content-Type
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class EventStream(Protocol):
    """An open watch: its status and headers; `body()` for a refusal, `readline()` for each event (b"" at the end)."""

    status: int
    headers: Mapping[str, str]

    async def body(self) -> bytes: ...

    async def readline(self) -> bytes: ...


class Transport(Protocol):
    server: str  # where requests go, for messages
    context: str | None

    async def send(self, request: Request, *, timeout_s: float) -> Answer:
        """One request, one whole answer; raises ClusterError when no answer came."""
        ...

    def stream(self, request: Request, *, read_timeout_s: float) -> AbstractAsyncContextManager[EventStream]:
        """A watch request: the answer's lines as they come (the stream is closed on exit)."""
        ...


class _HttpStream:
    def __init__(self, response: aiohttp.ClientResponse, transport: HttpTransport, where: str) -> None:
        self._response = response
        self._transport = transport
        self._where = where
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def body(self) -> bytes:
        try:
            return await self._response.read()
        except _NO_ANSWER as e:
            raise self._transport.unreachable(e, self._where) from e

    async def readline(self) -> bytes:
        try:
            return await self._response.content.readline()
        except _NO_ANSWER as e:
            raise self._transport.unreachable(e, self._where) from e


class HttpTransport:
    """Requests on the KubeConnection: its aiohttp session, TLS, proxy and credentials (exec plugins refreshed)."""

    def __init__(self, connection: KubeConnection) -> None:
        self.connection = connection
        self.server = connection.server
        self.context = connection.context

    async def send(self, request: Request, *, timeout_s: float) -> Answer:
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        try:
            async with await self._send(request, timeout) as response:
                return Answer(status=response.status, headers=response.headers, body=await response.read())
        except _NO_ANSWER as e:
            raise self.unreachable(e, f"{request.method} {request.path}") from e

    @asynccontextmanager
    async def stream(self, request: Request, *, read_timeout_s: float) -> AsyncIterator[EventStream]:
        # No total timeout: the server ends the watch; sock_read notices a silently dead connection.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout_s)
        where = f"watch {request.path}"
        try:
            response = await self._send(request, timeout)
        except _NO_ANSWER as e:
            raise self.unreachable(e, where) from e
        try:
            yield _HttpStream(response, self, where)
        finally:
            response.close()

    async def _send(self, request: Request, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        return await self.connection.request(
            request.method, request.path, params=request.query, headers=request.headers, data=request.body, timeout=timeout
        )

    def unreachable(self, error: BaseException, what: str) -> ClusterError:
        return describe(error, server=self.server, context=self.context, resource=what)
