"""Credentials: token files re-read as they rotate, exec plugins (a real child process) run once per
credential and again near expiry or after a 401, their failures as Unauthorized; TLS contexts."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuctl.errors import ConfigError, Unauthorized
from gpuctl.sources.kube.auth import Credentials, ssl_context
from gpuctl.sources.kube.kubeconfig import Cluster, ExecPlugin, Pem, User
from testbed.pki import CertificateAuthority

CLUSTER = Cluster(server="https://k8s:6443", ca=None, insecure=True, tls_server_name="kubernetes", proxy=None)
V1 = "client.authentication.k8s.io/v1"

# A real exec plugin: logs each run (with the env it got) and prints what $ANSWER says.
PLUGIN = """\
#!{python}
import json, os, sys
with open(os.environ["RUNS"], "a") as log:
    log.write(json.dumps({{"info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]), "args": sys.argv[1:],
                          "extra": os.environ.get("EXTRA")}}) + "\\n")
answer = open(os.environ["ANSWER"]).read()
if answer.startswith("FAIL"):
    print("the identity provider said no", file=sys.stderr)
    sys.exit(3)
print(answer)
"""


def plugin(tmp_path: Path, **kw: object) -> tuple[ExecPlugin, Path, Path]:
    script = tmp_path / "login"
    script.write_text(PLUGIN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    runs, answer = tmp_path / "runs.jsonl", tmp_path / "answer.json"
    env = (("RUNS", str(runs)), ("ANSWER", str(answer)), ("EXTRA", "yes"))
    options: dict[str, object] = {"api_version": V1, "command": str(script), "args": ("--cluster", "c"), "env": env,
                                  "install_hint": None, "provide_cluster_info": True, "user": "me", **kw}  # fmt: skip
    return ExecPlugin(**options), runs, answer  # type: ignore[arg-type]


def credential(token: str | None = None, *, expires: str | None = None, api_version: str = V1, **status: str) -> str:
    body: dict[str, object] = dict(status)
    if token is not None:
        body["token"] = token
    if expires is not None:
        body["expirationTimestamp"] = expires
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": body})


def runs_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_exec_plugin_runs_once_per_credential_and_again_near_expiry_or_after_a_401(tmp_path: Path) -> None:
    exec_plugin, runs, answer = plugin(tmp_path)
    now = [datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()]
    answer.write_text(credential("t1", expires="2026-11-30T12:05:00Z"))
    creds = Credentials(User(name="me", exec=exec_plugin), CLUSTER, clock=lambda: now[0])

    logins = await asyncio.gather(*(creds.login() for _ in range(5)))  # five requests waiting: one run
    assert {login.authorization for login in logins} == {"Bearer t1"}
    (run,) = runs_of(runs)
    assert run["args"] == ["--cluster", "c"] and run["extra"] == "yes"
    assert run["info"] == {
        "apiVersion": V1, "kind": "ExecCredential",
        "spec": {"interactive": False,
                 "cluster": {"server": "https://k8s:6443", "insecure-skip-tls-verify": True, "tls-server-name": "kubernetes"}},
    }  # fmt: skip

    answer.write_text(credential("t2", expires="2026-11-30T12:10:00Z"))
    now[0] += 4 * 60  # a minute to go: still good
    assert (await creds.login()).authorization == "Bearer t1" and len(runs_of(runs)) == 1
    now[0] += 55  # within the margin before expiry: fetched anew
    assert (await creds.login()).authorization == "Bearer t2" and len(runs_of(runs)) == 2

    answer.write_text(credential("t3"))  # no expiry: kept until the server refuses it
    creds.invalidate()
    assert (await creds.login()).authorization == "Bearer t3"
    now[0] += 10**6
    assert (await creds.login()).authorization == "Bearer t3" and len(runs_of(runs)) == 3


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        ("FAIL", "the exec plugin '{cmd}' of user 'me' failed (exit 3): the identity provider said no"),
        ("not json", "printed no ExecCredential"),
        (credential("t", api_version="client.authentication.k8s.io/v1beta1"),
         "answered client.authentication.k8s.io/v1beta1, but the kubeconfig asks for client.authentication.k8s.io/v1"),
        (credential(), "gave neither a token nor a client certificate"),
        (credential(clientCertificateData="CERT"), "gave a client certificate without its key"),
    ],
)  # fmt: skip
async def test_a_plugin_that_gives_no_credential_is_unauthorized(tmp_path: Path, answer: str, needle: str) -> None:
    exec_plugin, _, answer_file = plugin(tmp_path)
    answer_file.write_text(answer)
    creds = Credentials(User(name="me", exec=exec_plugin), CLUSTER)
    with pytest.raises(Unauthorized) as caught:
        await creds.login()
    assert needle.format(cmd=exec_plugin.command) in str(caught.value) and caught.value.status == 401


def test_a_plugin_that_is_not_installed_is_a_config_error_with_its_hint(tmp_path: Path) -> None:
    exec_plugin, _, _ = plugin(tmp_path, command="gke-gcloud-auth-plugin-nowhere", install_hint="Install it with gcloud.\nMore.")
    with pytest.raises(ConfigError, match="exec plugin 'gke-gcloud-auth-plugin-nowhere', which is not installed") as caught:
        Credentials(User(name="me", exec=exec_plugin), CLUSTER)
    assert caught.value.hint == "Install it with gcloud."


async def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    creds = Credentials(User(name="sa", token_file=token), CLUSTER)
    assert (await creds.login()).authorization == "Bearer first"
    # The kubelet rotates a projected token by swapping a symlinked folder: a new file.
    rotated = tmp_path / "token.new"
    rotated.write_text("second")
    os.replace(rotated, token)
    assert (await creds.login()).authorization == "Bearer second"
    token.unlink()
    with pytest.raises(Unauthorized, match=f"cannot read the token file {token} of user 'sa'"):
        await creds.login()


async def test_static_credentials() -> None:
    assert (await Credentials(User(name="a", token="t"), CLUSTER).login()).authorization == "Bearer t"
    basic = await Credentials(User(name="a", basic=("ann", "pw")), CLUSTER).login()
    assert basic.authorization == "Basic YW5uOnB3"
    assert (await Credentials(User(name="a"), CLUSTER).login()).authorization is None


def test_tls_contexts(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("me", "me")
    trusted = Cluster(server="https://k8s", ca=Pem(ca.pair.cert.read_bytes(), "ca"), insecure=False, tls_server_name=None, proxy=None)
    context = ssl_context(trusted, (Pem(pair.cert.read_bytes(), "crt"), Pem(pair.key.read_bytes(), "key")))
    assert context.check_hostname and context.get_ca_certs()[0]["subject"]
    assert not ssl_context(CLUSTER, None).check_hostname
    with pytest.raises(ConfigError, match="the cluster CA from bad-ca does not load"):
        ssl_context(Cluster(server="https://k8s", ca=Pem(b"junk", "bad-ca"), insecure=False, tls_server_name=None, proxy=None), None)
    with pytest.raises(ConfigError, match="the client certificate crt and key other-key do not load"):
        ssl_context(trusted, (Pem(pair.cert.read_bytes(), "crt"), Pem(ca.issue("x", "x").key.read_bytes(), "other-key")))
