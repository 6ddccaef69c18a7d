"""A gpuctl process for a test to kill mid-run (`python -m tests.integration.engine_child KUBECONFIG DIR NAMESPACE RUN`).

It executes RUN as its requester with the test logic, which stops for good before its second write:
the test sees the first write in the audit log, then SIGKILLs this process.
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


async def execute(kubeconfig: str, directory: str, namespace: str, run: str) -> None:
    config = settings(Path(kubeconfig), Path(directory), namespace)
    async with open_engine(config, registry=registry(_stop_before_second_write), host="child") as engine:
        await engine.execute(run, by=USER_A)


if __name__ == "__main__":
    asyncio.run(execute(*sys.argv[1:]))
