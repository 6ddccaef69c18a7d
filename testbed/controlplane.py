"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC and the
default admission plugins, ResourceQuota included), kube-controller-manager,
kube-scheduler and kwok standing in for kubelets on fake GPU nodes.

Binaries come from testbed/build-binaries.sh (built from Go modules, cached by
version). Every port is a free one, so parallel runs do not collide.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from testbed.pki import CertificateAuthority, KeyPair, service_account_keys
from testbed.process import Component, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "testbed" / "build-binaries.sh"

# kwok manages only nodes carrying this annotation, so a stray real node never is.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

CONTROLLERS = ",".join(
    [
        "resourcequota-controller",
        "disruption-controller",
        "namespace-controller",
        "garbage-collector-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "replicaset-controller",
        "deployment-controller",
        "statefulset-controller",
        "job-controller",
        "cronjob-controller",
        "ttl-after-finished-controller",
        "pod-garbage-collector-controller",
    ]
)


@dataclass(frozen=True)
class Identity:
    """Who a kubeconfig authenticates as: the client cert's CN and O fields."""

    name: str
    groups: tuple[str, ...] = ()


ADMIN = Identity("testbed-admin", ("system:masters",))
USER_A = Identity("user-a", ("team-a",))
USER_B = Identity("user-b", ("team-b",))
# The service identity gpuctl's bot and playbooks run as: it may impersonate the
# humans it acts for, and nothing else until a test grants it.
OPERATOR = Identity("gpuctl-operator", ("gpuctl:operators",))
# May read nodes, pods and namespaces and nothing else: what gpuctl shows when
# RBAC hides quotas, ReplicaSets, Jobs and PodDisruptionBudgets.
VIEWER = Identity("gpu-viewer", ("gpuctl:viewers",))
IDENTITIES = (ADMIN, USER_A, USER_B, OPERATOR, VIEWER)


def cached_directory(script: Path) -> Path:
    """Run a test-bed build/fetch script (cached by version: instant when warm);
    returns the directory it prints on its last line."""
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def build_binaries() -> Path:
    """Build (or find cached) binaries; returns their directory."""
    return cached_directory(BUILD_SCRIPT)


class ControlPlane:
    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.pki_dir = workdir / "pki"
        self.log_dir = workdir / "logs"
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self._client_certs: dict[str, KeyPair] = {}
        self.components: dict[str, Component] = {}

    # -- identities ----------------------------------------------------------
    def client_cert(self, identity: Identity) -> KeyPair:
        return self._client_certs[identity.name]

    def kubeconfig(self, identity: Identity | str = ADMIN) -> Path:
        name = identity if isinstance(identity, str) else identity.name
        return self.workdir / "kubeconfigs" / f"{name}.yaml"

    def _write_kubeconfig(self, identity: Identity, pair: KeyPair) -> None:
        self._kubeconfig_for(identity.name, {"client-certificate": str(pair.cert), "client-key": str(pair.key)})

    def token_kubeconfig(self, name: str, token: str) -> Path:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's, from the TokenRequest API)."""
        return self._kubeconfig_for(name, {"token": token})

    def _kubeconfig_for(self, name: str, user: dict[str, str]) -> Path:
        path = self.kubeconfig(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "gpuctl-testbed", "cluster": {"server": self.server, "certificate-authority": str(self.ca.pair.cert)}}
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": f"testbed-{name}", "context": {"cluster": "gpuctl-testbed", "user": name}}],
            "current-context": f"testbed-{name}",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.log_dir.mkdir(parents=True)
        self.ca = CertificateAuthority(self.pki_dir)
        self.serving = self.ca.issue("apiserver", "kube-apiserver", server=True)
        self.sa_keys = service_account_keys(self.pki_dir)
        for identity in IDENTITIES:
            pair = self.ca.issue(identity.name, identity.name, groups=identity.groups)
            self._client_certs[identity.name] = pair
            self._write_kubeconfig(identity, pair)

        self.components["etcd"] = self._etcd()
        await self.components["etcd"].start()
        self.components["kube-apiserver"] = self._apiserver()
        await self.components["kube-apiserver"].start(timeout_s=90)
        for component in (self._controller_manager(), self._scheduler(), self._kwok()):
            self.components[component.name] = component
            await component.start()
        await self._bootstrap()

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    async def restart_apiserver(self, *, down_for_s: float = 0.0) -> None:
        """Kill kube-apiserver and bring it back on the same port (watch-recovery tests)."""
        apiserver = self.components["kube-apiserver"]
        apiserver.stop(grace_s=2)
        await asyncio.sleep(down_for_s)  # the outage the test asked for, not a wait for a state
        await apiserver.start(timeout_s=90)

    async def compact_etcd(self) -> int:
        """Compact away all of etcd's history before now, as kube-apiserver's own compactor does
        every --etcd-compaction-interval, and record the revision under `compact_rev_key` (API
        servers watch that key and drop cached list snapshots older than it, within ~15 s).
        Returns the compacted revision: every resourceVersion before it is gone.

        Afterwards a watch from an older resourceVersion that the API server's watch cache does not
        hold, or a continue token from before, gets 410 Gone."""
        url = f"http://127.0.0.1:{self.etcd_port}/v3/kv"
        key = base64.b64encode(b"compact_rev_key").decode()

        async def put(session: aiohttp.ClientSession, value: str) -> int:
            body = {"key": key, "value": base64.b64encode(value.encode()).decode()}
            async with session.post(f"{url}/put", json=body) as response:
                response.raise_for_status()
                return int((await response.json())["header"]["revision"])

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            revision = await put(session, "")  # a new revision, so everything up to now can go
            async with session.post(f"{url}/compaction", json={"revision": str(revision), "physical": True}) as response:
                response.raise_for_status()
            await put(session, str(revision))
        return revision

    # -- components ----------------------------------------------------------
    def _etcd(self) -> Component:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{free_port()}"
        return Component(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
                "--experimental-watch-progress-notify-interval=5s",
                "--unsafe-no-fsync",  # test data only; saves seconds per run
                "--log-level=warn",
            ],
            log_dir=self.log_dir,
            ready=lambda: http_ok(f"{client}/health"),
        )

    def _apiserver(self) -> Component:
        return Component(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca.pair.cert}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.sa_keys.cert}",
                f"--service-account-signing-key-file={self.sa_keys.key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                f"--cert-dir={self.pki_dir / 'apiserver-generated'}",
                "--profiling=false",
                "--v=0",
            ],
            log_dir=self.log_dir,
            ready=self._apiserver_ready,
        )

    def _admin_kube_args(self, port: int) -> list[str]:
        admin = str(self.kubeconfig(ADMIN))
        return [
            f"--kubeconfig={admin}",
            f"--authentication-kubeconfig={admin}",
            f"--authorization-kubeconfig={admin}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
        ]

    def _controller_manager(self) -> Component:
        port = free_port()
        return Component(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                *self._admin_kube_args(port),
                f"--controllers={CONTROLLERS}",
                f"--root-ca-file={self.ca.pair.cert}",
                f"--service-account-private-key-file={self.sa_keys.key}",
                "--use-service-account-credentials=false",
                # Quota usage settles in about a second instead of the default resync.
                "--concurrent-resource-quota-syncs=5",
                "--resource-quota-sync-period=10s",
            ],
            log_dir=self.log_dir,
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/healthz"),
        )

    def _scheduler(self) -> Component:
        port = free_port()
        return Component(
            "kube-scheduler",
            [str(self.bin_dir / "kube-scheduler"), *self._admin_kube_args(port)],
            log_dir=self.log_dir,
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/healthz"),
        )

    def _kwok(self) -> Component:
        key, value = KWOK_NODE_ANNOTATION
        port = free_port()
        return Component(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={self.kubeconfig(ADMIN)}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--server-address=127.0.0.1:{port}",
                "--node-ip=127.0.0.1",
                "--cidr=10.1.0.1/16",
                f"--config={REPO_ROOT / 'testbed' / 'kwok-stages.yaml'}",
            ],
            log_dir=self.log_dir,
            # kwok also reads ~/.kwok/kwok.yaml: give it a home of its own.
            env={"HOME": str(self.workdir)},
            ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        )

    # -- readiness and bootstrap ----------------------------------------------
    def admin_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.pair.cert))
        admin = self.client_cert(ADMIN)
        context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    async def _apiserver_ready(self) -> bool:
        return await http_ok(f"{self.server}/readyz", ssl_context=self.admin_ssl())

    async def _bootstrap(self) -> None:
        """Cluster-wide objects every test relies on."""
        from testbed.kube import apply_objects, client_for

        async with client_for(self) as api:
            await apply_objects(
                api,
                [
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRole",
                        "metadata": {"name": "gpuctl:impersonator"},
                        "rules": [
                            {"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]}
                        ],
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRoleBinding",
                        "metadata": {"name": "gpuctl:impersonator"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gpuctl:impersonator"},
                        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gpuctl:operators"}],
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRole",
                        "metadata": {"name": "gpuctl:viewer"},
                        "rules": [
                            {"apiGroups": [""], "resources": ["nodes", "pods", "namespaces"], "verbs": ["get", "list", "watch"]}
                        ],
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "ClusterRoleBinding",
                        "metadata": {"name": "gpuctl:viewer"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gpuctl:viewer"},
                        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gpuctl:viewers"}],
                    },
                ],
            )


async def http_ok(url: str, *, ssl_context: ssl.SSLContext | None = None) -> bool:
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(url, ssl=ssl_context if ssl_context else False) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False
