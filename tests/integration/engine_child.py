"""A gpuctl process for a test to kill or pause mid-run:

    python -m tests.integration.engine_child KUBECONFIG DIR NAMESPACE RUN [LOCK_LEASE_S]

It executes RUN as its requester with the test logic, which stops before its second write: for good
(the test sees the first write in the audit log, then SIGKILLs this process), or, given
LOCK_LEASE_S (its target Leases' duration), until a line arrives on stdin; then it prints the
Outcome as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gpuctl.playbooks.service import open_engine
from tests.integration.engine_support import USER_A, registry, settings


async def _stop_before_second_write(index: int) -> None:
    if index == 1:
        await asyncio.Event().wait()  # until killed


async def _wait_for_stdin_before_second_write(index: int) -> None:
    if index == 1:
        await asyncio.to_thread(sys.stdin.readline)


async def execute(kubeconfig: str, directory: str, namespace: str, run: str, lock_lease_s: str | None = None) -> None:
    more = {} if lock_lease_s is None else {"lock_lease_s": lock_lease_s}
    gate = _stop_before_second_write if lock_lease_s is None else _wait_for_stdin_before_second_write
    config = settings(Path(kubeconfig), Path(directory), namespace, **more)
    async with open_engine(config, registry=registry(gate), host="child") as engine:
        outcome = await engine.execute(run, by=USER_A)
    print(outcome.model_dump_json(), flush=True)


if __name__ == "__main__":
    asyncio.run(execute(*sys.argv[1:]))
