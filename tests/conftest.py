"""Session fixtures for the real test bed.

- `control_plane`: etcd + kube-apiserver + controller-manager + scheduler + kwok,
  started once per session (testbed.controlplane.ControlPlane; kubeconfigs per
  identity via `control_plane.kubeconfig(USER_A)` etc.).
- `admin`: a testbed.kube.RestClient acting as cluster admin.
- `gpu_node`: the name of one ready kwok node with 8 `nvidia.com/gpu`.
- `fleet`: the simulated fleet (gpuctl.sim, seed 7) loaded into the control
  plane: nodes Ready, quotas counted, pods created and adopted by their owners.
- `playbookrun_crd`: the PlaybookRun CRD (deploy/crds/) installed and served;
  `gpuctl_roles`: deploy/rbac's ClusterRoles (bind them per test namespace).
- `operator_connection`: a gpuctl KubeConnection as gpuctl-operator, the
  service identity that may only impersonate (wrap it in a KubeApi);
  `gpuctl_namespace`: a fresh namespace where it owns its PlaybookRuns and Leases.
- `telemetry`: testbed.bed.Telemetry for that fleet — `.exporter` (the DCGM
  exporter simulator), `.monitoring` (real Prometheus + Alertmanager:
  `.prometheus_url`, `.alertmanager_url`, `wait_for_series`), `.webhook` (what
  Alertmanager posted).
- `mig_manager`: testbed.mig_manager.MigManagerSim, NVIDIA's MIG manager
  simulated on every node labelled `nvidia.com/gpu.deploy.mig-manager=true`
  (make them with testbed.gpu_operator.mig_node_object), reading
  `default-mig-parted-config` (testbed.gpu_operator.default_mig_parted_config)
  or `<node>-mig-config` in namespace `gpu-operator`; `.hang(node)` makes a
  node's next reconfiguration stick in `pending`.
- `upstream_crds`: Cluster API, Kueue and Karpenter CRDs from their Go modules,
  installed and Established (testbed.crds.InstalledCrds).
- `capi_provider`: testbed.capi_provider.CapiProvider for cluster
  `CAPI_CLUSTER` in namespace `CAPI_NAMESPACE`: create MachineDeployments
  there (testbed.capi_provider.machine_deployment_object) and kwok nodes
  follow their replicas.
- `karpenter`: the real Karpenter controller with its kwok cloud provider
  (testbed.karpenter.Karpenter; KWOKNodeClass `default` Ready, GPU instance
  types testbed.karpenter.GPU_INSTANCE_TYPES): create NodePools
  (testbed.karpenter.node_pool_object) and pending pods get kwok nodes.
- `postgres`: Debian's PostgreSQL (testbed.postgres.Postgres), one server per
  session on a loopback port (password logins) and a Unix socket (trusted):
  `await postgres.create_database()` makes an empty database owned by role
  `gpuctl`, `postgres.url(db)` is its URL for gpuctl (`--audit`),
  `postgres.superuser(db)` a connection that may do anything to it.
- `postgres_audit_url`: a fresh empty database's URL on that server, for a
  gpuctl audit log (`open_audit(postgres_audit_url)`, `--audit URL`).

Nothing starts unless a test asks for it, so unit tests stay fast. Tests outside
tests/integration run first: on a cold machine scripts/test is still building the test
bed's binaries in the background, and the first integration test waits for them
(outside its timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import settings

from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.sim.fleet import Fleet, build_fleet
from gpuctl.sources.kube.connect import KubeConnection, connect
from testbed.bed import Telemetry
from testbed.capi_provider import CAPI_CLUSTER, CAPI_NAMESPACE, CapiProvider
from testbed.controlplane import OPERATOR, REPO_ROOT, ControlPlane, build_binaries
from testbed.crds import InstalledCrds, fetch_crds, install_upstream_crds
from testbed.fleet_loader import load_fleet, wait_nodes_ready
from testbed.gpu_operator import OPERATOR_NAMESPACE, default_mig_parted_config, mig_config_map
from testbed.karpenter import Karpenter, build_karpenter
from testbed.kube import RestClient, apply_objects, client_for, install_crds, load_manifests
from testbed.kubectl import build_kubectl
from testbed.mig_manager import MigManagerSim
from testbed.nodes import gpu_node_object
from testbed.objects import namespace_object, role_binding, unique
from testbed.postgres import Postgres
from testbed.waiting import poll

# No per-example deadline: a wall-clock limit fails property tests on a loaded machine (on a cold
# run the test bed builds beside them), and no test asserts on elapsed time.
settings.register_profile("gpuctl", deadline=None)
settings.load_profile("gpuctl")

INTEGRATION = Path(__file__).parent / "integration"
BUILT = pytest.StashKey[bool]()


def needs_test_bed(item: pytest.Item) -> bool:
    return INTEGRATION in item.path.parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need no test bed first (a stable sort keeps each module's order)."""
    items.sort(key=needs_test_bed)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    """Before the first integration test, wait for (or do) every test-bed build: outside the test's
    timeout (this wrapper runs before pytest-timeout's starts its clock), and instant when cached."""
    if needs_test_bed(item) and not item.session.stash.get(BUILT, False):
        for build in (build_binaries, build_kubectl, fetch_crds, build_karpenter):
            try:
                build()
            except (RuntimeError, OSError) as e:  # a failed build ends the run with its reason, not an INTERNALERROR
                pytest.exit(f"test-bed build {build.__name__} failed, no integration test can run "
                            f"(logs: .testbed/build-logs): {e}", returncode=1)  # fmt: skip
        item.session.stash[BUILT] = True
    yield


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def control_plane(tmp_path_factory) -> AsyncIterator[ControlPlane]:
    bin_dir = await asyncio.to_thread(build_binaries)
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), bin_dir)
    try:
        await plane.start()
        yield plane
    finally:
        plane.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def admin(control_plane: ControlPlane) -> AsyncIterator[RestClient]:
    async with client_for(control_plane) as client:
        yield client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gpu_node(admin: RestClient) -> str:
    name = "smoke-gpu-0"
    await apply_objects(admin, [gpu_node_object(name, labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, resources={"nvidia.com/gpu": 8})])
    await wait_nodes_ready(admin, {name})
    return name


PLAYBOOKRUN_CRD = REPO_ROOT / "deploy" / "crds" / "playbookruns.gpuctl.io.yaml"
GPUCTL_ROLES = REPO_ROOT / "deploy" / "rbac" / "playbookruns.yaml"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playbookrun_crd(admin: RestClient) -> Path:
    await install_crds(admin, PLAYBOOKRUN_CRD)
    return PLAYBOOKRUN_CRD


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gpuctl_roles(admin: RestClient) -> Path:
    await apply_objects(admin, load_manifests(GPUCTL_ROLES))
    return GPUCTL_ROLES


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def operator_connection(control_plane: ControlPlane) -> AsyncIterator[KubeConnection]:
    connection = await connect(kubeconfig=control_plane.kubeconfig(OPERATOR))
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(loop_scope="session")
async def gpuctl_namespace(admin: RestClient, operator_connection: KubeConnection, gpuctl_roles: Path) -> str:
    """gpuctl's own namespace (gpuctl:operator-state bound there), once RBAC lets the operator in."""
    namespace = unique("gpuctl")
    binding = role_binding("operator-state", namespace, role="gpuctl:operator-state", group="gpuctl:operators", cluster_role=True)
    await apply_objects(admin, [namespace_object(namespace), binding])
    api = KubeApi(operator_connection)

    async def operator_may_list_leases() -> bool:
        return (await api.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases")).ok

    await poll(operator_may_list_leases, what="the operator's RoleBinding to reach RBAC")
    return namespace


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fleet(admin: RestClient) -> Fleet:
    """The default simulated fleet (seed 7), loaded into the control plane."""
    simulated = build_fleet(seed=7)
    await load_fleet(admin, simulated)
    return simulated


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def telemetry(fleet: Fleet, tmp_path_factory) -> AsyncIterator[Telemetry]:
    started = await Telemetry.start(tmp_path_factory.mktemp("telemetry"), fleet, seed=7)
    try:
        # FB_USED exists for every device, MIG instances included (GPU_UTIL does not).
        await started.monitoring.wait_for_series("DCGM_FI_DEV_FB_USED", count=len(fleet.gpus))
        yield started
    finally:
        await started.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mig_manager(admin: RestClient) -> AsyncIterator[MigManagerSim]:
    await apply_objects(admin, [namespace_object(OPERATOR_NAMESPACE), mig_config_map(default_mig_parted_config())])
    sim = MigManagerSim(admin, namespace=OPERATOR_NAMESPACE)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def upstream_crds(admin: RestClient) -> InstalledCrds:
    return await install_upstream_crds(admin, await asyncio.to_thread(fetch_crds))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def capi_provider(admin: RestClient, upstream_crds: InstalledCrds) -> AsyncIterator[CapiProvider]:
    await apply_objects(admin, [namespace_object(CAPI_NAMESPACE)])
    provider = CapiProvider(admin, cluster=CAPI_CLUSTER, namespace=CAPI_NAMESPACE)
    await provider.start()
    try:
        yield provider
    finally:
        await provider.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def karpenter(
    control_plane: ControlPlane, admin: RestClient, upstream_crds: InstalledCrds, tmp_path_factory
) -> AsyncIterator[Karpenter]:
    bin_dir = await asyncio.to_thread(build_karpenter)
    controller = Karpenter(control_plane, tmp_path_factory.mktemp("karpenter"), bin_dir)
    try:
        await controller.start(admin)
        yield controller
    finally:
        controller.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres(tmp_path_factory) -> AsyncIterator[Postgres]:
    async with Postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_audit_url(postgres: Postgres) -> str:
    """A fresh, empty database for an audit log: its URL as role gpuctl, with the password, over TCP."""
    return postgres.url(await postgres.create_database())
