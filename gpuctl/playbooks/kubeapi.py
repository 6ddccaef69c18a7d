"""One request to the API server, as gpuctl itself or as the identity it acts for.

Headers are a CIMultiDict, one `Impersonate-Group` line per group (a client
that flattens headers into a dict, as generated clients do, keeps only one,
and RBAC bound to the other groups silently stops applying), sent through the
KubeConnection: the same TLS setup, connection pool and credentials
(exec-plugin tokens refreshed when they expire) as every other call.

Requests travel through a `Transport` (transport.py): HTTP to a real API
server, or the demo's simulated one (gpuctl.sim.api).

Every request becomes an `ApiCall` (gpuctl.audit.records: method, path, status,
the API server's `Audit-ID`, whom it acted as): results carry theirs, and the
optional `on_call` sink sees every one, refusals included, for the audit log.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field

from gpuctl.audit.records import ApiCall, HttpMethod
from gpuctl.errors import (
    AlreadyExists,
    ApiRejected,
    ClusterError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
)
from gpuctl.identity import Identity
from gpuctl.playbooks.transport import EventStream, HttpTransport, Request, Transport
from gpuctl.sources.kube.connect import KubeConnection, describe
from gpuctl.sources.kube.reflector import Gone

JSON = dict[str, Any]
Method = HttpMethod

# Who a request without impersonation acts as, in messages (the kubeconfig's user, or the pod's service account).
OWN_IDENTITY = "the connection's own identity"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# An HTTP header value we are willing to send: printable ASCII, no CR/LF (no header injection).
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


CallSink = Callable[[ApiCall], None]


class ObjectRef(BaseModel):
    """Where an object lives in the API: group/version/plural, namespace (None: cluster-scoped), name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str = ""
    version: str = "v1"
    plural: str = Field(min_length=1)
    namespace: str | None = None
    name: str = Field(min_length=1)

    def path(self, subresource: str | None = None) -> str:
        tail = f"/{quote(self.name, safe='')}" + (f"/{subresource}" if subresource else "")
        return collection_path(self.group, self.version, self.plural, self.namespace) + tail

    def __str__(self) -> str:
        kind = f"{self.plural}.{self.group}" if self.group else self.plural
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


def collection_path(group: str, version: str, plural: str, namespace: str | None = None) -> str:
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}" if namespace else f"{prefix}/{plural}"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    call: ApiCall
    body: JSON  # the object, or a Status for error answers; {} when the body is not a JSON object
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.call.status < 300

    @property
    def retry_after_s(self) -> int | None:
        return retry_after_seconds(self.headers.get("Retry-After"))


def retry_after_seconds(value: str | None) -> int | None:
    """The delay-seconds form of Retry-After (what kube-apiserver sends); None when absent or not a number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def impersonation_headers(identity: Identity) -> CIMultiDict[str]:
    """Impersonate-User, then one Impersonate-Group header per group (the API server reads them all)."""
    headers: CIMultiDict[str] = CIMultiDict()
    for value in (identity.user, *identity.groups):
        if not _HEADER_VALUE.fullmatch(value):
            raise ConfigError(
                f"cannot act as {identity}: {value!r} cannot be sent in an HTTP header",
                hint="user and group names must be printable ASCII",
            )
    headers["Impersonate-User"] = identity.user
    for group in identity.groups:
        headers.add("Impersonate-Group", group)
    return headers


def _parse(data: bytes) -> JSON:
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class KubeApi:
    """Raw-JSON requests through a Transport, optionally impersonating an identity. No retries: callers decide.

    `KubeApi(connection)` talks to a real API server (HttpTransport); `KubeApi(transport)` to anything
    that answers like one (the demo's simulated API)."""

    def __init__(self, target: KubeConnection | Transport, *, on_call: CallSink | None = None, timeout_s: float = 30.0) -> None:
        self.transport: Transport = HttpTransport(target) if isinstance(target, KubeConnection) else target
        self._on_call = on_call
        self._timeout_s = timeout_s

    @property
    def server(self) -> str:
        return self.transport.server

    def with_sink(self, on_call: CallSink | None) -> KubeApi:
        """The same transport, another sink for the calls made through it."""
        return KubeApi(self.transport, on_call=on_call, timeout_s=self._timeout_s)

    async def request(
        self,
        method: Method,
        path: str,
        *,
        acting_as: Identity | None = None,
        body: JSON | list[JSON] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        dry_run: bool = False,
    ) -> ApiResponse:
        """Send one request; any HTTP answer is returned (see `check`), no answer raises ClusterUnreachable."""
        query = {**(params or {}), **({"dryRun": "All"} if dry_run else {})}
        data = None if body is None else json.dumps(body).encode()
        request = Request(method, path, query, _headers(acting_as, content_type, accept), data)
        answer = await self.transport.send(request, timeout_s=self._timeout_s)
        payload = _parse(answer.body)
        return self._answered(method, path, query, answer.status, answer.headers, payload, acting_as=acting_as, dry_run=dry_run)

    @asynccontextmanager
    async def watch(
        self, path: str, *, acting_as: Identity | None = None, params: Mapping[str, str] | None = None, timeout_s: int = 300
    ) -> AsyncIterator[AsyncIterator[JSON]]:
        """A watch on a collection: yields its events (`{"type", "object"}`) until the server ends it.

        Raises Gone on 410 (resourceVersion too old: list again), the mapped error for other refusals."""
        query = {**(params or {}), "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s)}
        where = f"watch {path}"
        request = Request("GET", path, query, _headers(acting_as, "application/json", "application/json"), None)
        async with self.transport.stream(request, read_timeout_s=timeout_s + 30) as stream:
            payload = {} if stream.status == 200 else _parse(await stream.body())
            answered = self._answered(
                "GET", path, query, stream.status, stream.headers, payload, acting_as=acting_as, dry_run=False
            )
            check(answered, what=where)
            yield self._events(stream, where)

    def _answered(
        self,
        method: Method,
        path: str,
        query: Mapping[str, str],
        status: int,
        headers: Mapping[str, str],
        payload: JSON,
        *,
        acting_as: Identity | None,
        dry_run: bool,
    ) -> ApiResponse:
        """Record the answer as an ApiCall (and hand it to the sink)."""
        error = payload if status >= 300 and payload.get("kind") == "Status" else {}
        call = ApiCall(
            method=method,
            path=path + (f"?{urlencode(query)}" if query else ""),
            status=status,
            audit_id=headers.get("Audit-Id"),
            acting_as=acting_as,
            dry_run=dry_run,
            reason=error.get("reason") or None,
            message=error.get("message") or None,
        )
        if self._on_call is not None:
            self._on_call(call)
        return ApiResponse(call=call, body=payload, headers=headers)

    async def _events(self, stream: EventStream, where: str) -> AsyncIterator[JSON]:
        while True:
            line = await stream.readline()
            try:
                event = json.loads(line) if line.strip() else None
            except ValueError as e:
                raise describe(e, server=self.transport.server, context=self.transport.context, resource=where) from e
            if not line:
                return  # the server ended the watch
            if event is None:
                continue
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                if status.get("code") == 410:
                    raise Gone(status.get("message", "resource version too old"))
                code = int(status.get("code") or 500)
                raise ApiRejected(f"{where} failed: {status.get('message')}", status=code, reason=status.get("reason"))
            yield event


def _headers(acting_as: Identity | None, content_type: str, accept: str) -> CIMultiDict[str]:
    headers = impersonation_headers(acting_as) if acting_as else CIMultiDict()
    headers["Accept"] = accept
    headers["Content-Type"] = content_type
    headers["User-Agent"] = "gpuctl"
    return headers


def check(response: ApiResponse, *, what: str) -> JSON:
    """The body of a 2xx answer; otherwise the gpuctl error for it. `what` reads like "patch resourcequotas a/gpus"."""
    if response.ok:
        return response.body
    raise refusal(response, what=what)


def refusal(response: ApiResponse, *, what: str) -> ClusterError:
    """The gpuctl error for an error answer, naming who was refused what and the API server's words, carrying the call."""
    call = response.call
    who = str(call.acting_as) if call.acting_as else OWN_IDENTITY
    said = call.message or f"HTTP {call.status}"
    if call.status == 401:
        return Unauthorized(
            f"the API server rejected the credentials for {what} (401)",
            status=401,
            hint="refresh the kubeconfig's credentials",
            call=call,
        )
    if call.status == 403:
        return Forbidden(
            f"{who} may not {what}: {said}",
            reason=call.reason,
            hint="the cluster's RBAC decides; ask an admin for a Role granting it",
            call=call,
        )
    if call.status == 404:
        return NotFound(f"cannot {what}: {said}", status=404, reason=call.reason, call=call)
    if call.status == 409:
        if call.reason == "AlreadyExists":
            return AlreadyExists(f"cannot {what}: {said}", status=409, reason=call.reason, call=call)
        return Conflict(
            f"cannot {what}: it changed since it was read ({said})",
            status=409,
            reason=call.reason,
            hint="read it again and re-plan",
            call=call,
        )
    return ApiRejected(
        f"cannot {what}: the API server answered {call.status}: {said}", status=call.status, reason=call.reason, call=call
    )
