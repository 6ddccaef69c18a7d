"""Connecting to the Kubernetes API, and turning its failures into gpuctl errors.

Each connection gets its own Configuration and ApiClient (never the library's
global default), so several clusters or identities can coexist in one process.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException

from gpuctl.errors import ClusterError, ClusterUnreachable, ConfigError, Unauthorized

DEFAULT_KUBECONFIG = Path("~/.kube/config")


@dataclass
class KubeConnection:
    api: ApiClient
    context: str | None
    server: str
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()


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


async def connect(*, kubeconfig: Path | None = None, context: str | None = None, in_cluster: bool = False) -> KubeConnection:
    """An ApiClient for the kubeconfig (path, $KUBECONFIG, ~/.kube/config) or the pod's service account.

    Raises ConfigError when there is nothing to connect with or the kubeconfig is unusable;
    it does not contact the server (the watchers report reachability).
    """
    cfg = Configuration()
    tasks: list[asyncio.Task[None]] = []
    paths = None if in_cluster else kubeconfig_paths(kubeconfig)
    if in_cluster or (paths is None and os.environ.get("KUBERNETES_SERVICE_HOST")):
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            raise ConfigError(f"cannot use the in-cluster service account: {e}", hint="run inside a pod or pass --kubeconfig") from e
        name: str | None = "in-cluster"
    elif paths is None:
        raise ConfigError(
            "no kubeconfig found ($KUBECONFIG unset or missing, no ~/.kube/config)",
            hint="pass --kubeconfig FILE, or try --demo",
        )
    else:
        try:
            loader = await kconfig.load_kube_config(
                config_file=paths, context=context, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
            where = f"context {context!r} in {paths}" if context else paths
            raise ConfigError(f"cannot use kubeconfig {where}: {e}", hint="check `kubectl config get-contexts`") from e
        current = loader.current_context
        name = current.get("name") if isinstance(current, dict) else (context or None)
        # Exec plugins and GCP tokens expire: the library refreshes them in a loop (a no-op otherwise).
        tasks.append(asyncio.create_task(kconfig.refresh_token(loader, cfg)))
    return KubeConnection(api=ApiClient(configuration=cfg), context=name, server=str(cfg.host), _tasks=tasks)


def describe(error: BaseException, *, server: str, context: str | None, resource: str) -> ClusterError:
    """A gpuctl error a person can act on, for anything a list or watch raised."""
    where = f"the Kubernetes API at {server}" + (f" (context {context})" if context else "")
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
