"""Fixtures for the playbook engine's integration tests (test_engine.py, test_executor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest_asyncio

from testbed.gpu_operator import OPERATOR_NAMESPACE
from testbed.kube import RestClient, apply_objects
from testbed.objects import namespace_object, role_binding
from tests.integration.engine_support import run_grants


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def operator_reads(admin: RestClient, gpuctl_roles: Path) -> None:
    """The service identity reads cluster-wide (deploy/rbac gpuctl:reader) and the MIG manager's ConfigMaps
    in the GPU Operator's namespace (gpuctl:mig-config-reader), as an installation binds them."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "gpuctl:reader-operators"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gpuctl:reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gpuctl:operators"}],
    }
    mig_configs = role_binding("gpuctl:mig-config-reader-operators", OPERATOR_NAMESPACE, role="gpuctl:mig-config-reader",
                               group="gpuctl:operators", cluster_role=True)  # fmt: skip
    await apply_objects(admin, [binding, namespace_object(OPERATOR_NAMESPACE), mig_configs])


@pytest_asyncio.fixture(loop_scope="session")
async def engine_home(admin: RestClient, gpuctl_namespace: str, playbookrun_crd: Path, operator_reads: None) -> str:
    """gpuctl's namespace for an engine test: teams a and b may submit runs there, team b may approve them."""
    await apply_objects(admin, run_grants(gpuctl_namespace))
    return gpuctl_namespace
