"""The kubeconfig loader: kubectl's merge rules, what each cluster and user field becomes, and clear errors.

(What kubectl itself makes of the same files, and logging in to a real API server with each kind of
user, is tests/integration/test_kubeconfig_kubectl.py.)"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from gpuctl.errors import ConfigError
from gpuctl.sources.kube.connect import load_access
from gpuctl.sources.kube.contexts import read_contexts
from gpuctl.sources.kube.kubeconfig import in_cluster, read_merged, resolve

PEM = b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"


def write(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def config(*, clusters=(), users=(), contexts=(), current: str | None = None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    doc: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters],
        "users": [{"name": n, "user": u} for n, u in users],
        "contexts": [{"name": n, "context": c} for n, c in contexts],
    }
    if current is not None:
        doc["current-context"] = current
    return doc


def test_the_first_file_wins_each_name_and_the_current_context(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", config(
        clusters=[("shared", {"server": "https://first:6443"})],
        users=[("me", {"token": "first-token"})],
        contexts=[("prod", {"cluster": "shared", "user": "me"})],
    ))  # fmt: skip
    second = write(tmp_path / "b.yaml", config(
        clusters=[("shared", {"server": "https://second:6443", "insecure-skip-tls-verify": True}),
                  ("other", {"server": "https://other:6443"})],
        users=[("me", {"token": "second-token"})],
        contexts=[("prod", {"cluster": "other", "user": "me"}), ("dev", {"cluster": "other"})],
        current="dev",
    ))  # fmt: skip
    merged = read_merged(os.pathsep.join([str(first), str(second), str(first), str(tmp_path / "missing.yaml")]))
    assert merged.current_context == "dev"  # the first file that sets one
    assert list(merged.contexts) == ["prod", "dev"]
    access = resolve(merged, "prod")
    # Whole entries from the first file: never merged field by field (no insecure flag from b.yaml).
    assert access.cluster.server == "https://first:6443" and not access.cluster.insecure
    assert access.user.token == "first-token"
    dev = resolve(merged, None)
    assert (dev.context, dev.cluster.server, dev.user.name) == ("dev", "https://other:6443", "")


def test_every_cluster_and_user_field_and_relative_paths(tmp_path: Path) -> None:
    folder = tmp_path / "kube"
    (folder / "certs").mkdir(parents=True)
    for name in ("ca.crt", "me.crt", "me.key"):
        (folder / "certs" / name).write_bytes(PEM + name.encode())
    (folder / "token").write_text("from-file\n")
    path = write(folder / "config", config(
        clusters=[("c", {"server": "https://k8s.example:6443/", "certificate-authority": "certs/ca.crt",
                         "tls-server-name": "kubernetes", "proxy-url": "http://proxy:3128"})],
        users=[("certs", {"client-certificate": "certs/me.crt", "client-key": "certs/me.key"}),
               ("embedded", {"client-certificate-data": base64.b64encode(b"CERT").decode(),
                             "client-key-data": base64.b64encode(b"KEY").decode()}),
               ("file", {"tokenFile": "token"}),
               ("both", {"token": "inline", "tokenFile": "token"}),
               ("basic", {"username": "ann", "password": "s3cret"}),
               ("plugin", {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/login",
                                    "args": ["--x"], "env": [{"name": "A", "value": "1"}], "interactiveMode": "Never",
                                    "provideClusterInfo": True}})],
        contexts=[(n, {"cluster": "c", "user": n}) for n in ("certs", "embedded", "file", "both", "basic", "plugin")],
        current="certs",
    ))  # fmt: skip
    merged = read_merged(str(path))
    certs = resolve(merged, "certs")
    cluster = certs.cluster
    assert (cluster.server, cluster.tls_server_name, cluster.proxy) == ("https://k8s.example:6443", "kubernetes", "http://proxy:3128")
    assert cluster.ca is not None and cluster.ca.data == PEM + b"ca.crt" and cluster.ca.source == str(folder / "certs/ca.crt")
    assert certs.user.cert is not None and certs.user.cert.data == PEM + b"me.crt"
    assert certs.user.key is not None and certs.user.key.data == PEM + b"me.key"
    embedded = resolve(merged, "embedded").user
    assert (embedded.cert and embedded.cert.data, embedded.key and embedded.key.data) == (b"CERT", b"KEY")
    assert resolve(merged, "file").user.token_file == folder / "token"
    both = resolve(merged, "both").user
    assert both.token == "inline" and both.token_file is None  # client-go: the inline token wins
    assert resolve(merged, "basic").user.basic == ("ann", "s3cret")
    plugin = resolve(merged, "plugin").user.exec
    assert plugin is not None
    assert (plugin.command, plugin.args, plugin.env) == (str(folder / "bin/login"), ("--x",), (("A", "1"),))
    assert plugin.provide_cluster_info and plugin.api_version == "client.authentication.k8s.io/v1"


@pytest.mark.parametrize(
    ("user", "needle"),
    [
        ({"auth-provider": {"name": "oidc", "config": {}}}, "user 'u' logs in with auth-provider 'oidc', which gpuctl does not support"),
        ({"token": "t", "as": "root"}, "user 'u' impersonates 'root' (as:)"),
        ({"client-certificate-data": "!!!", "client-key-data": "a2V5"}, "user 'u': client-certificate-data is not valid base64"),
        ({"client-certificate": "/nonexistent/me.crt", "client-key": "/nonexistent/me.key"},
         "user 'u': client-certificate: cannot read /nonexistent/me.crt: No such file or directory"),
        ({"client-certificate-data": "Q0VSVA=="}, "user 'u' has a client certificate without its key"),
        ({"tokenFile": "/nonexistent/token"}, "user 'u': tokenFile: cannot read /nonexistent/token"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
         "exec apiVersion 'client.authentication.k8s.io/v1alpha1' is not supported"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x", "interactiveMode": "Always"}},
         "needs a terminal (interactiveMode: Always)"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1"}}, "user 'u': exec.command: Field required"),
    ],
)  # fmt: skip
def test_an_unusable_user_is_a_config_error_that_names_it(tmp_path: Path, user: dict[str, object], needle: str) -> None:
    path = write(tmp_path / "config", config(
        clusters=[("c", {"server": "https://k8s:6443"})], users=[("u", user)], contexts=[("ctx", {"cluster": "c", "user": "u"})],
        current="ctx",
    ))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_access(kubeconfig=path)
    assert needle in str(caught.value) and f"cannot use kubeconfig {path}" in str(caught.value)


@pytest.mark.parametrize(
    ("cluster", "context", "needle"),
    [
        ({"server": "https://k8s:6443"}, "nope", "there is no context 'nope' (contexts: ctx)"),
        ({"server": "https://k8s:6443"}, None, "it sets no current-context"),
        ({"insecure-skip-tls-verify": True}, "ctx", "cluster 'c': server: Field required"),
        ({"server": "k8s:6443"}, "ctx", "server 'k8s:6443' is not an http(s) URL"),
        ({"server": "https://k8s", "proxy-url": "socks5://p:1080"}, "ctx", "gpuctl supports http:// and https:// proxies only"),
        ({"server": "https://k8s", "certificate-authority-data": "%%%"}, "ctx", "certificate-authority-data is not valid base64"),
    ],
)
def test_an_unusable_context_or_cluster_is_a_config_error(
    tmp_path: Path, cluster: dict[str, object], context: str | None, needle: str
) -> None:
    path = write(tmp_path / "config", config(clusters=[("c", cluster)], users=[("u", {"token": "t"})],
                                             contexts=[("ctx", {"cluster": "c", "user": "u"})]))  # fmt: skip
    with pytest.raises(ConfigError, match="cannot use kubeconfig") as caught:
        load_access(kubeconfig=path, context=context)
    assert needle in str(caught.value)


def test_a_context_naming_a_missing_cluster_or_user(tmp_path: Path) -> None:
    path = write(tmp_path / "config", config(
        clusters=[("c", {"server": "https://k8s:6443"})], users=[("u", {"token": "t"})],
        contexts=[("no-cluster", {"cluster": "missing", "user": "u"}), ("no-user", {"cluster": "c", "user": "ghost"}),
                  ("odd", {"cluster": "c", "user": "odd"})],
    ))  # fmt: skip
    with pytest.raises(ConfigError, match="context 'no-cluster' names cluster 'missing', which no kubeconfig file defines"):
        load_access(kubeconfig=path, context="no-cluster")
    with pytest.raises(ConfigError, match="context 'no-user' names user 'ghost'"):
        load_access(kubeconfig=path, context="no-user")


def test_an_odd_entry_nobody_uses_does_not_matter(tmp_path: Path) -> None:
    path = write(tmp_path / "config", config(
        clusters=[("c", {"server": "https://k8s:6443"}), ("odd", {"server": 7})],
        users=[("u", {"token": "t"}), ("gcp", {"auth-provider": {"name": "gcp"}})],
        contexts=[("ctx", {"cluster": "c", "user": "u"}), ("old", {"cluster": "odd", "user": "gcp"})], current="ctx",
    ))  # fmt: skip
    assert load_access(kubeconfig=path).user.token == "t"
    assert read_contexts(path).names == ("ctx", "old")


def test_files_that_are_not_kubeconfigs(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        read_contexts(bad_yaml)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n")
    with pytest.raises(ConfigError, match="a YAML mapping expected, not list"):
        load_access(kubeconfig=a_list)
    unnamed = write(tmp_path / "unnamed.yaml", {"clusters": [{"cluster": {"server": "https://x"}}]})
    with pytest.raises(ConfigError, match="every entry of clusters needs a name"):
        read_contexts(unnamed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_contexts(empty)


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(PEM)
    access = in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert access.context == "in-cluster" and access.cluster.server == "https://10.0.0.1:443"
    assert access.cluster.ca is not None and access.cluster.ca.data == PEM and access.user.token_file == tmp_path / "token"
    v6 = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert v6.cluster.server == "https://[fd00::1]:443"
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST/PORT are not set"):
        in_cluster({}, tmp_path)
    (tmp_path / "token").unlink()
    with pytest.raises(ConfigError, match="cannot use the in-cluster service account: token: cannot read"):
        in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
