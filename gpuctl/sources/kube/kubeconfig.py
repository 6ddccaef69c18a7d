"""Kubeconfig files (and the in-cluster service account) → where the API server is and how to log in.

Read the way kubectl reads them (k8s.io/client-go/tools/clientcmd): every file on
the search path in order, the first file that names a cluster, user or context
(or sets current-context) wins it, whole (entries are never merged field by
field); relative paths in an entry are relative to the file it came from. Only
the chosen context, its cluster and its user are validated, so an odd entry
nobody uses does not stop gpuctl, as it does not stop kubectl.

The result is an `Access`: a pydantic-checked cluster (server, CA, TLS options,
proxy) and user (client certificate, token, token file, basic auth, or an exec
plugin), with file references resolved and checked. How a user becomes request
credentials is auth.py's job; connect.py turns an Access into a connection.
Anything unusable is a ConfigError that names the file, the entry and the field.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuctl.errors import ConfigError

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# Where a pod's service account lives (client-go's rest.InClusterConfig).
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ClusterEntry(_Entry):
    server: str = Field(min_length=1)
    certificate_authority: str | None = Field(None, alias="certificate-authority")
    certificate_authority_data: str | None = Field(None, alias="certificate-authority-data")
    insecure_skip_tls_verify: bool = Field(False, alias="insecure-skip-tls-verify")
    tls_server_name: str | None = Field(None, alias="tls-server-name")
    proxy_url: str | None = Field(None, alias="proxy-url")


class ExecEnv(_Entry):
    name: str
    value: str


class ExecEntry(_Entry):
    api_version: str = Field(alias="apiVersion")
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: list[ExecEnv] = Field(default_factory=list)
    install_hint: str | None = Field(None, alias="installHint")
    provide_cluster_info: bool = Field(False, alias="provideClusterInfo")
    interactive_mode: Literal["Never", "IfAvailable", "Always"] | None = Field(None, alias="interactiveMode")


class UserEntry(_Entry):
    client_certificate: str | None = Field(None, alias="client-certificate")
    client_certificate_data: str | None = Field(None, alias="client-certificate-data")
    client_key: str | None = Field(None, alias="client-key")
    client_key_data: str | None = Field(None, alias="client-key-data")
    token: str | None = None
    token_file: str | None = Field(None, alias="tokenFile")
    username: str | None = None
    password: str | None = None
    exec: ExecEntry | None = None
    auth_provider: dict[str, Any] | None = Field(None, alias="auth-provider")
    impersonate: str | None = Field(None, alias="as")


class ContextEntry(_Entry):
    cluster: str = Field(min_length=1)
    user: str = ""
    namespace: str | None = None


M = TypeVar("M", bound=_Entry)


@dataclass(frozen=True, slots=True)
class Pem:
    """PEM bytes and where they came from (for messages)."""

    data: bytes
    source: str


@dataclass(frozen=True, slots=True)
class Cluster:
    server: str
    ca: Pem | None  # None: the system's trust store
    insecure: bool
    tls_server_name: str | None
    proxy: str | None


@dataclass(frozen=True, slots=True)
class ExecPlugin:
    api_version: str
    command: str  # resolved against the kubeconfig's folder when it names a relative path
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    install_hint: str | None
    provide_cluster_info: bool
    user: str  # the kubeconfig user it belongs to, for messages


@dataclass(frozen=True, slots=True)
class User:
    name: str
    cert: Pem | None = None
    key: Pem | None = None
    token: str | None = None
    token_file: Path | None = None  # re-read as it rotates
    basic: tuple[str, str] | None = None
    exec: ExecPlugin | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """Everything needed to talk to one API server as one user."""

    context: str | None
    cluster: Cluster
    user: User


@dataclass(frozen=True, slots=True)
class _Named:
    value: Any
    folder: Path  # relative paths in the entry are relative to its file's folder
    file: str


@dataclass(frozen=True, slots=True)
class Merged:
    """The kubeconfig files merged: each name's first entry, and the first current-context."""

    paths: str
    clusters: Mapping[str, _Named]
    users: Mapping[str, _Named]
    contexts: Mapping[str, _Named]
    current_context: str | None


def read_merged(paths: str) -> Merged:
    """Merge the files on `paths` (os.pathsep-separated, in order; repeats and missing files skipped)."""
    clusters: dict[str, _Named] = {}
    users: dict[str, _Named] = {}
    contexts: dict[str, _Named] = {}
    current: str | None = None
    seen: set[str] = set()
    for path in paths.split(os.pathsep):
        if not path or path in seen or not Path(path).is_file():
            continue
        seen.add(path)
        doc = _load_yaml(Path(path))
        for section, into in (("clusters", clusters), ("users", users), ("contexts", contexts)):
            for name, value in _named_entries(doc, section, path):
                into.setdefault(name, _Named(value, Path(path).resolve().parent, path))
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
    return Merged(paths=paths, clusters=clusters, users=users, contexts=contexts, current_context=current)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {e}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping expected, not {type(doc).__name__})")
    return doc


def _named_entries(doc: Mapping[str, Any], section: str, path: str) -> list[tuple[str, Any]]:
    """(name, value) of each `{name: …, <cluster|user|context>: {…}}` in a section."""
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise ConfigError(f"kubeconfig {path}: {section} must be a list")
    field = section[:-1]
    out: list[tuple[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"kubeconfig {path}: every entry of {section} needs a name")
        out.append((entry["name"], entry.get(field) or {}))
    return out


def resolve(merged: Merged, context: str | None) -> Access:
    """The Access of `context` (default: current-context). Raises ConfigError naming what is wrong."""
    name = context or merged.current_context
    if not name:
        raise ConfigError("it sets no current-context", hint="pass --context NAME")
    if name not in merged.contexts:
        known = ", ".join(sorted(merged.contexts)) or "none"
        raise ConfigError(f"there is no context {name!r} (contexts: {known})", hint="check `kubectl config get-contexts`")
    ctx = _validated(ContextEntry, merged.contexts[name], f"context {name!r}")
    if ctx.cluster not in merged.clusters:
        raise ConfigError(f"context {name!r} names cluster {ctx.cluster!r}, which no kubeconfig file defines")
    if ctx.user and ctx.user not in merged.users:
        raise ConfigError(f"context {name!r} names user {ctx.user!r}, which no kubeconfig file defines")
    cluster_entry = merged.clusters[ctx.cluster]
    cluster = _cluster(_validated(ClusterEntry, cluster_entry, f"cluster {ctx.cluster!r}"), cluster_entry, ctx.cluster)
    if not ctx.user:
        return Access(context=name, cluster=cluster, user=User(name=""))
    user_entry = merged.users[ctx.user]
    user = _user(_validated(UserEntry, user_entry, f"user {ctx.user!r}"), user_entry, ctx.user)
    return Access(context=name, cluster=cluster, user=user)


def _validated(model: type[M], named: _Named, what: str) -> M:
    try:
        return model.model_validate(named.value)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{named.file}: {what}: {problems}") from e


def _cluster(entry: ClusterEntry, named: _Named, name: str) -> Cluster:
    where = f"{named.file}: cluster {name!r}"
    ca = _pem(entry.certificate_authority_data, entry.certificate_authority, named.folder, f"{where}: certificate-authority")
    if entry.proxy_url and not entry.proxy_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: proxy-url {entry.proxy_url!r}: gpuctl supports http:// and https:// proxies only")
    if not entry.server.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: server {entry.server!r} is not an http(s) URL")
    return Cluster(
        server=entry.server.rstrip("/"),
        ca=ca,
        insecure=entry.insecure_skip_tls_verify,
        tls_server_name=entry.tls_server_name or None,
        proxy=entry.proxy_url or None,
    )


def _user(entry: UserEntry, named: _Named, name: str) -> User:
    where = f"{named.file}: user {name!r}"
    if entry.auth_provider is not None:
        provider = entry.auth_provider.get("name", "?")
        raise ConfigError(
            f"{where} logs in with auth-provider {provider!r}, which gpuctl does not support",
            hint="use the provider's exec credential plugin instead (as current kubectl does)",
        )
    if entry.impersonate is not None:
        raise ConfigError(
            f"{where} impersonates {entry.impersonate!r} (as:), which gpuctl does not support",
            hint="gpuctl impersonates the requester itself: use a user without `as`",
        )
    cert = _pem(entry.client_certificate_data, entry.client_certificate, named.folder, f"{where}: client-certificate")
    key = _pem(entry.client_key_data, entry.client_key, named.folder, f"{where}: client-key")
    if (cert is None) != (key is None):
        raise ConfigError(f"{where} has a client certificate without its key, or a key without its certificate")
    token_file = None
    if entry.token_file and not entry.token:  # client-go: a token in the file wins over tokenFile
        token_file = _path(entry.token_file, named.folder)
        _readable(token_file, f"{where}: tokenFile")
    basic = None
    if entry.username is not None or entry.password is not None:
        basic = (entry.username or "", entry.password or "")
    plugin = None
    if entry.exec is not None:
        plugin = _exec(entry.exec, named.folder, name, where)
    return User(name=name, cert=cert, key=key, token=entry.token or None, token_file=token_file, basic=basic, exec=plugin)


def _exec(entry: ExecEntry, folder: Path, user: str, where: str) -> ExecPlugin:
    if entry.api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f"{where}: exec apiVersion {entry.api_version!r} is not supported (supported: {', '.join(EXEC_API_VERSIONS)})"
        )
    if entry.interactive_mode == "Always":
        raise ConfigError(f"{where}: the exec plugin {entry.command!r} needs a terminal (interactiveMode: Always)")
    command = entry.command
    if os.sep in command and not os.path.isabs(command):  # client-go resolves only paths, not bare names
        command = str(folder / command)
    return ExecPlugin(
        api_version=entry.api_version,
        command=command,
        args=tuple(entry.args),
        env=tuple((e.name, e.value) for e in entry.env),
        install_hint=entry.install_hint,
        provide_cluster_info=entry.provide_cluster_info,
        user=user,
    )


def _path(value: str, folder: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def _readable(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from e


def _pem(data: str | None, file: str | None, folder: Path, what: str) -> Pem | None:
    """A `*-data` field (base64, which wins, as in client-go) or the file it names."""
    if data:
        try:
            return Pem(base64.b64decode(data, validate=True), f"{what}-data")
        except (binascii.Error, ValueError) as e:
            raise ConfigError(f"{what}-data is not valid base64: {e}") from e
    if file:
        path = _path(file, folder)
        return Pem(_readable(path, what), str(path))
    return None


def in_cluster(env: Mapping[str, str], account: Path = SERVICE_ACCOUNT) -> Access:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its CA, its token file (re-read as the
    kubelet rotates it). Raises ConfigError when not in a pod."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError(
            "cannot use the in-cluster service account: KUBERNETES_SERVICE_HOST/PORT are not set",
            hint="run inside a pod or pass --kubeconfig",
        )
    token = account / "token"
    _readable(token, "cannot use the in-cluster service account: token")
    ca = Pem(_readable(account / "ca.crt", "cannot use the in-cluster service account: CA"), str(account / "ca.crt"))
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    cluster = Cluster(server=server, ca=ca, insecure=False, tls_server_name=None, proxy=None)
    return Access(context="in-cluster", cluster=cluster, user=User(name="service account", token_file=token))


def context_names(merged: Merged) -> Sequence[str]:
    """Every context, in the order the files list them (first file first)."""
    return tuple(merged.contexts)
