"""How a long-running gpuctl process takes SIGTERM and SIGINT: the first winds down, a second stops now.

The running loop takes both signals itself, so they work also when the process
started with SIGINT ignored (a shell's background job, `cmd &`), where Python
installs no KeyboardInterrupt handler and asyncio.run none of its own.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While entered (in a task, on its loop): the first stop signal calls `wind_down` (without one, it
    cancels the task, as a second signal always does). Leaving after a cancel of its own, the task is
    uncancelled and the cancel swallowed; after a SIGINT, KeyboardInterrupt is raised (exit 130, as an
    interrupted program's is), after SIGTERM the task goes on (exit 0)."""

    def __init__(self, wind_down: Callable[[], None] | None = None) -> None:
        self._wind_down = wind_down
        self.received: list[signal.Signals] = []
        self._cancelled = False

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "StopSignals is entered in a task"
        self._task = task
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) == 1 and self._wind_down is not None:
            self._wind_down()
        elif not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> bool:
        for sig in STOP_SIGNALS:
            self._loop.remove_signal_handler(sig)
        ours = isinstance(error, asyncio.CancelledError) and self._cancelled
        if ours:
            self._task.uncancel()
        if (error is None or ours) and signal.SIGINT in self.received:
            raise KeyboardInterrupt
        return ours
