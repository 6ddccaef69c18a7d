"""The desk: identity and policy before any answer, and no input at all that makes it raise or show a traceback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.bot import commands as c
from gpuctl.bot.desk import Asker, Desk
from gpuctl.bot.identity import IdentityMap, IdentityResolver, Mapped
from gpuctl.doctor.findings import Report
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.run import diagnose
from gpuctl.model import Snapshot
from gpuctl.playbooks.policy import Policy, Role
from gpuctl.query.fleet import FleetIndex
from testbed.slack import blocks_text
from tests.tui.demo_fleet import demo_snapshots
from tests.unit.bot.seams import Answering


class Fixed:
    """One snapshot, always (the view a running cluster gives, frozen for the test)."""

    def __init__(self, snap: Snapshot | None) -> None:
        self.indexed = None if snap is None else (snap, FleetIndex(snap))

    async def current(self) -> tuple[Snapshot, FleetIndex] | None:
        return self.indexed

    async def waiting_for(self) -> str:
        return "cluster: DISCONNECTED - connection refused"
    async def doctor(self, options: DoctorOptions) -> Report | None:
        """The doctor on the snapshot alone (the demo has no API server for the one-shot lists)."""
        return None if self.indexed is None else diagnose(Inventory(snapshot=self.indexed[0]), options)


POLICY = Policy(roles={"viewers": Role(groups=("team-a",))}, unmapped="none")
MAP = IdentityMap(users={"U0ALICE01": Mapped(user="alice", groups=("team-a",)), "U0NOROLE1": Mapped(user="norole")})


@pytest.fixture(scope="module")
async def desk() -> Desk:
    snap = (await demo_snapshots(ticks=2))[-1]
    return Desk(view=Fixed(snap), resolver=IdentityResolver(MAP), policy=POLICY, seam=Answering())


async def test_a_mapped_user_without_a_role_gets_the_policy_reason(desk: Desk) -> None:
    done = await desk.command(Asker("U0NOROLE1"), "status", key="k")
    assert done.outcome == "denied"
    assert "norole holds no gpuctl role and the policy lets unmapped users see nothing" in blocks_text(done.reply.message())


async def test_no_data_yet_is_said_plainly() -> None:
    desk = Desk(view=Fixed(None), resolver=IdentityResolver(MAP), policy=POLICY, seam=Answering())
    done = await desk.command(Asker("U0ALICE01"), "status", key="k")
    shown = blocks_text(done.reply.message())
    assert done.outcome == "unavailable" and "still reading the cluster" in shown and "connection refused" in shown


async def test_doctor_answers_with_the_findings_of_the_snapshot(desk: Desk) -> None:
    done = await desk.command(Asker("U0ALICE01"), "doctor", key="k")
    shown = blocks_text(done.reply.message())
    assert done.outcome == "ok" and done.verb == "doctor"
    assert shown.startswith("GPU practices: ") and "`nodes.gpu-taint`" in shown and "Fix:" in shown
    one = await desk.command(Asker("U0ALICE01"), "doctor nobody-here", key="k")
    assert blocks_text(one.reply.message()).startswith("GPU practices in nobody-here: no findings")


async def test_an_unexpected_error_is_logged_with_a_reference_not_shown(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Fixed):
        async def current(self) -> tuple[Snapshot, FleetIndex] | None:
            raise KeyError("boom")

    broken = Desk(view=Broken(None), resolver=IdentityResolver(MAP), policy=POLICY, seam=Answering())
    with caplog.at_level("ERROR", logger="gpuctl.bot.desk"):
        done = await broken.command(Asker("U0ALICE01"), "pools", key="k")
    shown = blocks_text(done.reply.message())
    assert done.outcome == "error" and "logged the error as ref" in shown
    assert "KeyError" not in shown and "Traceback" not in shown
    (record,) = [r for r in caplog.records if "failed (ref" in r.getMessage()]
    assert record.exc_info is not None and record.getMessage().split("ref ")[1].rstrip(")") in shown


WORDS = st.sampled_from([*c.USAGE, "ns:team-a", "pool:", "node:", "a100", "team-a/x", "x=1", "=", "/", "50", "0", "-1",
                         "&lt;!channel&gt;", "<@U1>", "`", "*", "\u202e", "\x00", "é"])  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | st.lists(WORDS, max_size=6).map(" ".join))
async def test_any_text_gets_an_answer_never_an_exception(desk: Desk, text: str) -> None:
    done = await desk.command(Asker("U0ALICE01"), text, key="k")
    shown = blocks_text(done.reply.message())
    assert done.outcome in ("ok", "invalid", "unavailable") and done.reply.blocks
    assert "Traceback" not in shown and "<!channel>" not in shown
    assert done.verb == c.verb_of(c.parse(text))


async def test_a_burst_of_one_command_is_answered_from_one_computation(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuctl.bot import desk as module

    computed: list[c.Command] = []
    answer = module.answer

    def counted(command: c.Command, snap: Snapshot, index: FleetIndex) -> Any:
        computed.append(command)
        return answer(command, snap, index)

    monkeypatch.setattr(module, "answer", counted)
    desk.replies = module.Replies()
    burst = await asyncio.gather(*(desk.command(Asker("U0ALICE01"), text, key=f"k{i}")
                                   for i, text in enumerate(["status"] * 10 + ["pools"] * 5)))  # fmt: skip
    assert {d.outcome for d in burst} == {"ok"} and len({blocks_text(d.reply.message()) for d in burst}) == 2
    assert sorted(map(type, computed), key=str) == [c.Pools, c.Status]
