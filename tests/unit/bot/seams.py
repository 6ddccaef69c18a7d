"""A base for the engine seams unit tests hand the bot: every call a test does not expect fails it."""

from __future__ import annotations

from typing import NoReturn

from gpuctl.bot.blocks import Reply, notice
from gpuctl.bot.commands import Run
from gpuctl.bot.engine_seam import AlertAnswer, AlertProposal
from gpuctl.identity import Identity, Requester


class Unexpected:
    """An EngineSeam whose every method fails the test (subclasses define what the test expects)."""

    def _unexpected(self, what: str) -> NoReturn:
        raise AssertionError(f"the engine seam was not expected to get {what}")

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        self._unexpected("run")

    async def runs(self, viewer: Identity) -> Reply:
        self._unexpected("runs")

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply:
        self._unexpected("audit")

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        self._unexpected("review")

    async def follow(self, run_id: str) -> Reply | None:
        self._unexpected("follow")

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        self._unexpected("alert")

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply:
        self._unexpected("execute_alert")


class Answering:
    """An EngineSeam that answers every call with a plain notice naming it (the desk's tests: input → some answer)."""

    async def run(self, requester: Requester, command: Run, *, key: str) -> Reply:
        return notice("Engine", f"run {command.playbook}")

    async def runs(self, viewer: Identity) -> Reply:
        return notice("Engine", "runs")

    async def audit(self, viewer: Identity, run_id: str | None) -> Reply:
        return notice("Engine", f"audit {run_id}")

    async def review(self, approver: Requester, run_id: str, *, approve: bool) -> Reply:
        return notice("Engine", f"review {run_id}")

    async def follow(self, run_id: str) -> Reply | None:
        return None

    async def alert(self, proposal: AlertProposal) -> AlertAnswer:
        return AlertAnswer([])

    async def execute_alert(self, proposal: AlertProposal, run_id: str) -> Reply:
        return notice("Engine", f"execute {run_id}")
