"""Fixtures for the playbook engine's integration tests (test_engine.py, test_executor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest_asyncio

from testbed.kube import RestClient, apply_objects
from tests.integration.engine_support import operator_read_grants, run_grants


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def operator_reads(admin: RestClient, gpuctl_roles: Path) -> None:
    """The service identity reads as an installation lets it (engine_support.operator_read_grants)."""
    await apply_objects(admin, operator_read_grants())


@pytest_asyncio.fixture(loop_scope="session")
async def engine_home(admin: RestClient, gpuctl_namespace: str, playbookrun_crd: Path, operator_reads: None) -> str:
    """gpuctl's namespace for an engine test: teams a and b may submit runs there, team b may approve them."""
    await apply_objects(admin, run_grants(gpuctl_namespace))
    return gpuctl_namespace
