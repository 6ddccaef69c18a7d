"""How a connection logs in: its TLS context, and the credentials each request carries.

A kubeconfig user (kubeconfig.User) becomes `Credentials`, asked before every
request (`await credentials.login()`): a static token or basic auth costs
nothing; a token file is re-read when it changes (the kubelet rotates a
service account's token in place); an exec plugin (client.authentication.k8s.io
v1 or v1beta1) runs when there is no credential yet or the last one is about to
expire (its expirationTimestamp), once for every request waiting on it, and may
hand back a token or a client certificate. After a 401, `invalidate()` makes
the next request fetch afresh, as client-go does.

A credential that cannot be had at request time (the plugin failed, the token
file vanished) is an Unauthorized error with the plugin's own words: a
watcher retries it like any refusal, it never crashes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuctl.errors import ConfigError, Unauthorized
from gpuctl.sources.kube.kubeconfig import Cluster, ExecPlugin, Pem, User

# Fetch a new exec credential this long before the old one expires: a request must not race the expiry.
EXPIRY_MARGIN_S = 10.0
EXEC_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Login:
    """What one request presents: an Authorization header value, and/or a client certificate."""

    authorization: str | None = None
    cert: tuple[Pem, Pem] | None = None  # (certificate, key)


class _ExecStatus(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    token: str | None = None
    client_certificate_data: str | None = Field(None, alias="clientCertificateData")
    client_key_data: str | None = Field(None, alias="clientKeyData")
    expiration: datetime | None = Field(None, alias="expirationTimestamp")


class _ExecCredential(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: str = Field(alias="apiVersion")
    kind: Literal["ExecCredential"]
    status: _ExecStatus


class Credentials:
    """One user's credentials for one cluster, fetched when needed (module docstring)."""

    def __init__(self, user: User, cluster: Cluster, *, clock: Callable[[], float] = time.time) -> None:
        self.user = user
        self._cluster = cluster
        self._clock = clock
        if user.exec is not None and shutil.which(user.exec.command) is None:
            hint = user.exec.install_hint or f"install {user.exec.command} or fix the kubeconfig's exec command"
            raise ConfigError(
                f"user {user.name!r} logs in with the exec plugin {user.exec.command!r}, which is not installed",
                hint=hint.strip().splitlines()[0] if hint.strip() else None,
            )
        self._static = _static_login(user)
        self._file_login: tuple[tuple[int, int, int], Login] | None = None  # (stat signature, login)
        self._exec_login: tuple[float | None, Login] | None = None  # (expires at, login)
        self._exec_lock = asyncio.Lock()

    async def login(self) -> Login:
        if self.user.exec is not None:
            return await self._from_exec(self.user.exec)
        if self.user.token_file is not None:
            return self._from_file(self.user.token_file)
        return self._static

    def invalidate(self) -> None:
        """The server said 401: fetch afresh next time (a static credential stays what it is)."""
        self._file_login = None
        self._exec_login = None

    def _from_file(self, path: Path) -> Login:
        try:
            stat = path.stat()
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self._file_login is None or self._file_login[0] != signature:
                token = path.read_text().strip()
                self._file_login = (signature, Login(authorization=f"Bearer {token}", cert=self._static.cert))
        except OSError as e:
            raise Unauthorized(
                f"cannot read the token file {path} of user {self.user.name!r}: {e.strerror or e}", status=401
            ) from e
        return self._file_login[1]

    async def _from_exec(self, plugin: ExecPlugin) -> Login:
        async with self._exec_lock:  # every request waiting on a refresh shares one plugin run
            cached = self._exec_login
            if cached is not None and (cached[0] is None or self._clock() < cached[0] - EXPIRY_MARGIN_S):
                return cached[1]
            expires, login = await self._run(plugin)
            self._exec_login = (expires, login)
            return login

    async def _run(self, plugin: ExecPlugin) -> tuple[float | None, Login]:
        what = f"the exec plugin {plugin.command!r} of user {plugin.user!r}"
        env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(self._exec_info(plugin))}
        try:
            process = await asyncio.create_subprocess_exec(
                plugin.command, *plugin.args, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as e:
            raise Unauthorized(f"cannot run {what}: {e.strerror or e}", status=401, hint=plugin.install_hint) from e
        try:
            async with asyncio.timeout(EXEC_TIMEOUT_S):
                out, err = await process.communicate()
        except TimeoutError as e:
            process.kill()
            await process.wait()
            raise Unauthorized(f"{what} did not answer within {EXEC_TIMEOUT_S:g} s", status=401) from e
        if process.returncode != 0:
            said = err.decode(errors="replace").strip()[-300:] or "no message"
            raise Unauthorized(f"{what} failed (exit {process.returncode}): {said}", status=401)
        return self._parse(out, plugin, what)

    def _parse(self, out: bytes, plugin: ExecPlugin, what: str) -> tuple[float | None, Login]:
        try:
            credential = _ExecCredential.model_validate_json(out)
        except ValidationError as e:
            raise Unauthorized(f"{what} printed no ExecCredential: {e.errors()[0]['msg']}", status=401) from e
        if credential.api_version != plugin.api_version:
            raise Unauthorized(
                f"{what} answered {credential.api_version}, but the kubeconfig asks for {plugin.api_version}", status=401
            )
        status = credential.status
        cert = None
        if status.client_certificate_data or status.client_key_data:
            if not (status.client_certificate_data and status.client_key_data):
                raise Unauthorized(f"{what} gave a client certificate without its key (or a key without it)", status=401)
            cert = (Pem(status.client_certificate_data.encode(), what), Pem(status.client_key_data.encode(), what))
        if status.token is None and cert is None:
            raise Unauthorized(f"{what} gave neither a token nor a client certificate", status=401)
        login = Login(authorization=f"Bearer {status.token}" if status.token else None, cert=cert or self._static.cert)
        return (status.expiration.timestamp() if status.expiration else None), login

    def _exec_info(self, plugin: ExecPlugin) -> dict[str, object]:
        spec: dict[str, object] = {"interactive": False}
        if plugin.provide_cluster_info:
            cluster = self._cluster
            info: dict[str, object] = {"server": cluster.server, "insecure-skip-tls-verify": cluster.insecure}
            if cluster.ca is not None:
                info["certificate-authority-data"] = base64.b64encode(cluster.ca.data).decode()
            if cluster.tls_server_name:
                info["tls-server-name"] = cluster.tls_server_name
            if cluster.proxy:
                info["proxy-url"] = cluster.proxy
            spec["cluster"] = info
        return {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": spec}


def _static_login(user: User) -> Login:
    cert = (user.cert, user.key) if user.cert is not None and user.key is not None else None
    if user.token:
        return Login(authorization=f"Bearer {user.token}", cert=cert)
    if user.basic is not None:
        pair = f"{user.basic[0]}:{user.basic[1]}".encode()
        return Login(authorization=f"Basic {base64.b64encode(pair).decode()}", cert=cert)
    return Login(cert=cert)


def ssl_context(cluster: Cluster, cert: tuple[Pem, Pem] | None) -> ssl.SSLContext:
    """TLS to the cluster: its CA (or the system's), optionally unverified, presenting `cert`.

    Raises ConfigError for a CA or key pair that does not load."""
    try:
        context = ssl.create_default_context(cadata=cluster.ca.data.decode() if cluster.ca else None)
    except (ssl.SSLError, ValueError) as e:
        source = cluster.ca.source if cluster.ca else "the system"
        raise ConfigError(f"the cluster CA from {source} does not load: {e}") from e
    if cluster.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        _load_pair(context, *cert)
    return context


def _load_pair(context: ssl.SSLContext, cert: Pem, key: Pem) -> None:
    # The ssl module loads key pairs only from files: a private folder, gone right after.
    with tempfile.TemporaryDirectory(prefix="gpuctl-tls-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for path, pem in ((cert_file, cert), (key_file, key)):
            path.touch(mode=0o600)
            path.write_bytes(pem.data)
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"the client certificate {cert.source} and key {key.source} do not load: {e}") from e


def headers_of(login: Login) -> Mapping[str, str]:
    return {"Authorization": login.authorization} if login.authorization else {}
