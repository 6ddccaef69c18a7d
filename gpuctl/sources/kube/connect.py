"""Connecting to the Kubernetes API, and turning its failures into gpuctl errors.

A `KubeConnection` is one aiohttp session to one API server as one user (from
a kubeconfig context or the pod's service account: kubeconfig.py), with its
own TLS context and credentials (auth.py), so several clusters or identities
coexist in one process. Everything that talks to the API server goes through
`KubeConnection.request`: the watchers' lists and watches (`lister`) and the
playbook engine's requests (gpuctl.playbooks.transport). No generated client:
requests and answers are plain JSON, and importing one would cost ~50 MiB.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from gpuctl.errors import ClusterError, ClusterUnreachable, ConfigError, Unauthorized
from gpuctl.sources.kube.auth import Credentials, Login, ssl_context
from gpuctl.sources.kube.kubeconfig import Access, Pem, in_cluster, read_merged, resolve

DEFAULT_KUBECONFIG = Path("~/.kube/config")
# A watch event holds one whole object: allow lines up to etcd's 1.5 MiB request limit (aiohttp's default is 64 KiB).
READ_BUFSIZE = 2**21

# A list or watch call as the reflector makes it: keyword query parameters (limit, _continue, watch,
# resource_version, allow_watch_bookmarks, timeout_seconds, label_selector) and `_request_timeout`;
# the raw response, to be read and released by the caller.
ListCall = Callable[..., Awaitable[aiohttp.ClientResponse]]
_QUERY_NAMES = {
    "_continue": "continue",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
}


class KubeConnection:
    """One API server as one user: an aiohttp session, its TLS context, and credentials asked per request."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.context = access.context
        self.server = access.cluster.server
        self.credentials = Credentials(access.user, access.cluster)
        first = access.user.cert, access.user.key
        pair = (first[0], first[1]) if first[0] is not None and first[1] is not None else None
        self._ssl: tuple[tuple[Pem, Pem] | None, ssl.SSLContext] = (pair, ssl_context(access.cluster, pair))
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (aiohttp binds a session to the loop it is made in).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100), trust_env=True, read_bufsize=READ_BUFSIZE
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: CIMultiDict[str] | None = None,
        data: bytes | None = None,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """One request with this connection's credentials; the raw response (the caller reads and releases it).

        Raises Unauthorized when no credential can be had (an exec plugin failed), aiohttp's errors when
        no answer came. A 401 makes the next request fetch its credential afresh."""
        login = await self.credentials.login()
        sent = CIMultiDict(headers or {})
        if login.authorization:
            sent["Authorization"] = login.authorization
        cluster = self.access.cluster
        response = await self.session.request(
            method,
            self.server + path,
            params=params,
            headers=sent,
            data=data,
            timeout=timeout,
            ssl=self._tls(login),
            proxy=cluster.proxy,
            server_hostname=cluster.tls_server_name,
        )
        if response.status == 401:
            self.credentials.invalidate()
        return response

    def lister(self, path: str) -> ListCall:
        """The reflector's list/watch call for a collection path, e.g. /api/v1/pods."""

        async def call(*, _request_timeout: aiohttp.ClientTimeout, **query: Any) -> aiohttp.ClientResponse:
            params = {_QUERY_NAMES.get(k, k): _query_value(v) for k, v in query.items() if v is not None}
            return await self.request("GET", path, params=params, timeout=_request_timeout)

        return call

    def _tls(self, login: Login) -> ssl.SSLContext:
        # A certificate from an exec plugin may change at each refresh: a new context then (new connections).
        if login.cert != self._ssl[0]:
            try:
                self._ssl = (login.cert, ssl_context(self.access.cluster, login.cert))
            except ConfigError as e:
                raise Unauthorized(str(e), status=401) from e
        return self._ssl[1]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _query_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class HttpError(Exception):
    """A non-2xx answer (or a watch ERROR event) from the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def kubeconfig_paths(explicit: Path | None) -> str | None:
    """The kubeconfig search path (KUBECONFIG may list several files), or None if nothing exists."""
    if explicit is not None:
        if not explicit.expanduser().is_file():
            raise ConfigError(f"kubeconfig {explicit} does not exist", hint="fix --kubeconfig")
        return str(explicit.expanduser())
    env = os.environ.get("KUBECONFIG")
    candidates = env.split(os.pathsep) if env else [str(DEFAULT_KUBECONFIG)]
    existing = [str(Path(p).expanduser()) for p in candidates if p and Path(p).expanduser().is_file()]
    return os.pathsep.join(existing) if existing else None


def load_access(*, kubeconfig: Path | None = None, context: str | None = None, in_cluster_only: bool = False) -> Access:
    """Where to connect and as whom: the kubeconfig (path, $KUBECONFIG, ~/.kube/config), or the pod's
    service account (asked for, or when there is no kubeconfig inside a pod). Raises ConfigError."""
    paths = None if in_cluster_only else kubeconfig_paths(kubeconfig)
    if in_cluster_only or (paths is None and os.environ.get("KUBERNETES_SERVICE_HOST")):
        return in_cluster(os.environ)
    if paths is None:
        raise ConfigError(
            "no kubeconfig found ($KUBECONFIG unset or missing, no ~/.kube/config)",
            hint="pass --kubeconfig FILE, or try --demo",
        )
    try:
        return resolve(read_merged(paths), context)
    except ConfigError as e:
        where = f"context {context!r} in {paths}" if context else paths
        raise ConfigError(f"cannot use kubeconfig {where}: {e.message}", hint=e.hint or "check `kubectl config get-contexts`") from e


async def connect(*, kubeconfig: Path | None = None, context: str | None = None, in_cluster: bool = False) -> KubeConnection:
    """A connection for the kubeconfig (path, $KUBECONFIG, ~/.kube/config) or the pod's service account.

    Raises ConfigError when there is nothing to connect with or the kubeconfig is unusable;
    it does not contact the server (the watchers report reachability)."""
    access = load_access(kubeconfig=kubeconfig, context=context, in_cluster_only=in_cluster)
    try:
        return KubeConnection(access)
    except ConfigError as e:
        raise ConfigError(f"cannot use {_describe_access(access)}: {e.message}", hint=e.hint) from e


def _describe_access(access: Access) -> str:
    return "the in-cluster service account" if access.context == "in-cluster" else f"kubeconfig context {access.context!r}"


def describe(error: BaseException, *, server: str, context: str | None, resource: str) -> ClusterError:
    """A gpuctl error a person can act on, for anything a list or watch raised."""
    where = f"the Kubernetes API at {server}" + (f" (context {context})" if context else "")
    if isinstance(error, ClusterError):
        return error  # already explained (no credential could be had: auth.py)
    if isinstance(error, HttpError):
        if error.status == 401:
            return Unauthorized(
                f"{where} rejected the credentials (401 Unauthorized)",
                status=401,
                hint="refresh or fix the credentials in the kubeconfig",
            )
        if error.status == 403:
            return Unauthorized(
                f"{where} does not allow listing {resource} (403 Forbidden): {error.message}",
                status=403,
                hint=f"gpuctl needs RBAC get/list/watch on {resource} cluster-wide",
            )
        return ClusterUnreachable(f"{where} answered {error.status}: {error.message}", hint="retrying")
    if isinstance(error, aiohttp.ClientConnectorCertificateError | ssl.SSLError):
        return ClusterUnreachable(f"TLS with {where} failed: {error}", hint="check the cluster CA in the kubeconfig")
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = "connection refused" if error.os_error.errno == errno.ECONNREFUSED else error.os_error.strerror or error
        return ClusterUnreachable(f"cannot connect to {where}: {cause}", hint="is the API server up?")
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ClusterUnreachable(f"{where} closed the connection", hint="API server restarting? reconnecting")
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return ClusterUnreachable(f"{where} did not answer in time", hint="retrying")
    text = str(error) or type(error).__name__
    return ClusterUnreachable(f"connection to {where} failed: {text}", hint="retrying")
