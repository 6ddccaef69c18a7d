"""gpuctl's kubeconfig loader against kubectl and the real API server.

kubectl (at the control plane's version) merges the same $KUBECONFIG files: the
contexts, servers and users it ends up with are the ones gpuctl uses. Each kind of
login is then proved by the API server itself (a SelfSubjectReview says who we are):
client certificates from files and embedded (`kubectl config view --flatten`),
an exec plugin (a real child process handing out TokenRequest tokens, run again
after a 401), and the in-cluster service account with its token file rotated.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from multidict import CIMultiDict

from gpuctl.sources.kube.connect import KubeConnection, connect
from gpuctl.sources.kube.kubeconfig import in_cluster, read_merged, resolve
from testbed.controlplane import ADMIN, USER_A, ControlPlane
from testbed.kube import RestClient
from testbed.kubectl import build_kubectl

pytestmark = pytest.mark.testbed

NAMESPACE = "kubeconfig-logins"


async def whoami(connection: KubeConnection) -> str:
    """The user name the API server authenticated this connection as."""
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    response = await connection.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", headers=CIMultiDict({"Content-Type": "application/json"}),
        data=review, timeout=aiohttp.ClientTimeout(total=30),
    )  # fmt: skip
    async with response:
        body = await response.read()
        if response.status != 201:
            return f"refused {response.status}"
        return str(json.loads(body)["status"]["userInfo"]["username"])


async def who_is(connection: KubeConnection) -> str:
    try:
        return await whoami(connection)
    finally:
        await connection.close()


async def kubectl(*args: str, kubeconfig: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(await asyncio.to_thread(build_kubectl)), *args, env={**os.environ, "KUBECONFIG": kubeconfig},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def service_account_token(admin: RestClient, name: str) -> str:
    await admin.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}})
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    issued = await admin.request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{name}/token", request)
    assert issued.status == 201, issued.body
    return str(issued.body["status"]["token"])


@pytest.fixture(scope="module")
async def namespace(admin: RestClient) -> str:
    created = await admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    assert created.status in (201, 409), created.body
    return NAMESPACE


async def test_kubectl_and_gpuctl_merge_the_same_files_alike(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A last file that would change everything if it were read first: another server for the same cluster
    # name, another current-context; and one context of its own.
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "testbed-user-a",
        "clusters": [{"name": "gpuctl-testbed", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "late", "user": {"token": "late"}}],
        "contexts": [{"name": "late", "context": {"cluster": "gpuctl-testbed", "user": "late"}}],
    }))  # fmt: skip
    paths = os.pathsep.join([str(control_plane.kubeconfig(ADMIN)), str(control_plane.kubeconfig(USER_A)), str(late)])
    theirs = json.loads(await kubectl("config", "view", "--raw", "-o", "json", kubeconfig=paths))
    ours = read_merged(paths)
    assert ours.current_context == theirs["current-context"] == "testbed-testbed-admin"
    assert set(ours.contexts) == {c["name"] for c in theirs["contexts"]}
    their_clusters = {c["name"]: c["cluster"] for c in theirs["clusters"]}
    their_users = {u["name"]: u["user"] for u in theirs["users"]}
    for ctx in theirs["contexts"]:
        access = resolve(ours, ctx["name"])
        cluster, user = their_clusters[ctx["context"]["cluster"]], their_users[ctx["context"]["user"]]
        assert access.cluster.server == cluster["server"] == control_plane.server
        assert access.cluster.ca is not None and access.cluster.ca.source == cluster["certificate-authority"]
        if "client-certificate" in user:
            assert access.user.cert is not None and access.user.cert.source == user["client-certificate"]
        else:
            assert access.user.token == user["token"]

    monkeypatch.setenv("KUBECONFIG", paths)  # what a user's shell would hold
    assert await who_is(await connect()) == "testbed-admin"
    assert await who_is(await connect(context="testbed-user-a")) == "user-a"


async def test_embedded_certificates_from_kubectl_flatten(control_plane: ControlPlane, tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text(await kubectl("config", "view", "--raw", "--flatten", "--minify", kubeconfig=str(control_plane.kubeconfig(USER_A))))
    entry = yaml.safe_load(flat.read_text())
    assert "client-certificate-data" in entry["users"][0]["user"] and "certificate-authority-data" in entry["clusters"][0]["cluster"]
    assert await who_is(await connect(kubeconfig=flat)) == "user-a"


async def test_an_exec_plugin_logs_in_and_runs_again_after_a_401(
    control_plane: ControlPlane, admin: RestClient, namespace: str, tmp_path: Path
) -> None:
    token = await service_account_token(admin, "by-plugin")
    answer, runs = tmp_path / "answer", tmp_path / "runs"
    plugin = tmp_path / "bin" / "login"
    plugin.parent.mkdir()
    plugin.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(runs)!r}, 'a').write('run\\n')\n"
        f"print(open({str(answer)!r}).read())\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = yaml.safe_load(control_plane.kubeconfig(ADMIN).read_text())
    config["users"] = [{"name": "plugged", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "bin/login", "interactiveMode": "Never"}}}]
    config["contexts"][0]["context"]["user"] = "plugged"
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump(config))  # the command is relative to this file's folder

    def credential(value: str) -> str:
        return json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                           "status": {"token": value}})  # fmt: skip

    answer.write_text(credential("revoked"))
    connection = await connect(kubeconfig=kubeconfig)
    try:
        assert await whoami(connection) == "refused 401"
        answer.write_text(credential(token))
        assert await whoami(connection) == f"system:serviceaccount:{namespace}:by-plugin"
        assert await whoami(connection) == f"system:serviceaccount:{namespace}:by-plugin"
        assert runs.read_text().count("run") == 2  # once per credential: the 401 sent it back
    finally:
        await connection.close()


async def test_in_cluster_reads_the_rotated_token(control_plane: ControlPlane, admin: RestClient, namespace: str, tmp_path: Path) -> None:
    first, second = await service_account_token(admin, "pod-a"), await service_account_token(admin, "pod-b")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    shutil.copy(control_plane.ca.pair.cert, account / "ca.crt")
    (account / "token").write_text(first)
    server = urlsplit(control_plane.server)
    env = {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port)}
    connection = KubeConnection(in_cluster(env, account))
    try:
        assert connection.context == "in-cluster"
        assert await whoami(connection) == f"system:serviceaccount:{namespace}:pod-a"
        rotated = account / "token.new"
        rotated.write_text(second)
        rotated.replace(account / "token")  # as the kubelet swaps a projected token
        assert await whoami(connection) == f"system:serviceaccount:{namespace}:pod-b"
    finally:
        await connection.close()

