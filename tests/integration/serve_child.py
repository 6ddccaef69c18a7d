"""A real `gpuctl serve` process with the engine tests' playbook logic, for a test to signal and kill:

    python -m tests.integration.serve_child SERVE-ARGS...

It is `gpuctl serve SERVE-ARGS...` (gpuctl.cli.main, real flags and signal handling) whose playbook
logic is engine_support's QuotaLogic, held for good before a run's second write: a run over a
namespace with two GPU quotas stays mid-execution until the process is killed; one with a single
quota runs through.
"""

from __future__ import annotations

import asyncio
import sys

from gpuctl.cli import main
from tests.integration.engine_support import registry


async def _hold_second_write(index: int) -> None:
    if index == 1:
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]], registry=registry(_hold_second_write)))
