"""Two engines (two replicas' worth) sharing one PostgreSQL audit log on the test bed: one plans and
submits, the other approves and executes; every step lands in one valid chain that
`gpuctl audit verify` checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.audit import open_audit
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient
from tests.integration.engine_support import APPROVED, USER_A, USER_B, cli, engine_at, hard, key, kinds, team_namespace

pytestmark = pytest.mark.testbed


async def test_two_engines_record_one_run_in_one_postgres_chain(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, postgres_audit_url: str
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    async with (
        engine_at(control_plane, tmp_path / "one", engine_home, host="replica-1", audit=postgres_audit_url) as one,
        engine_at(control_plane, tmp_path / "two", engine_home, host="replica-2", audit=postgres_audit_url) as two,
    ):
        team_a = await team_namespace(admin, one, "a")
        plan = await one.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=(k := key()))
        run = (await one.submit(plan, key=k)).run_id
        await two.approve(USER_B, run, comment="ok from the other replica")
        outcome = await two.execute(run, by=USER_A)
        assert outcome.ok, outcome.message
    assert await hard(admin, team_a) == "8"

    async with open_audit(postgres_audit_url, create=False) as log:
        found = await log.records(run_id=run)
        assert not (tmp_path / "one" / "audit.sqlite").exists() and not (tmp_path / "two" / "audit.sqlite").exists()
    assert kinds(found) == [
        "requested", "planned", "authorized", "approved", "execution_started", "step", "api_call", "verified", "completed",
    ]  # fmt: skip
    assert found[3].actor == USER_B and found[3].payload["comment"] == "ok from the other replica"
    assert str(found[4].payload["by"]).startswith("replica-2")  # executed by the other engine
    code, out, err = await asyncio.to_thread(cli, "audit", "verify", "--audit", postgres_audit_url)
    assert code == 0 and out.startswith("intact: 9 records, chain unbroken (postgresql://gpuctl:***@127.0.0.1:"), err
    code, out, _ = await asyncio.to_thread(cli, "audit", "show", run, "--audit", postgres_audit_url)
    assert code == 0 and "state: completed (ended)" in out
