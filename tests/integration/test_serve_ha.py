"""Two `gpuctl serve` replicas as the test bed's service identity (gpuctl-operator, which may only
impersonate): serve_support.leader_kill, a Slack approval executed once through a leader kill.
test_deploy runs the same scenario as the ServiceAccount of the applied deploy/ overlay."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.controlplane import OPERATOR, ControlPlane
from testbed.kube import RestClient
from tests.integration.engine_support import engine_at
from tests.integration.serve_support import leader_kill

pytestmark = pytest.mark.testbed


async def test_only_the_leader_executes_and_a_killed_leaders_run_is_interrupted_never_repeated(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, postgres_audit_url: str
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home, audit=postgres_audit_url) as front:  # front: the CLI, say
        await leader_kill(admin, front, control_plane.kubeconfig(OPERATOR), tmp_path, engine_home, postgres_audit_url)
