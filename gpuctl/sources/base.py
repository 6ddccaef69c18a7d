"""What every source is, and the retry delay they share.

A source feeds a ClusterStore until cancelled: `await source.run(store)`. It
handles its own retries and never raises for an outage; it records the outage
in the store (WatchHealth / metrics_failed) so every consumer can show it.
Programming errors still raise (the service records them in the snapshot's
`failures`, see `describe_crash`), and CancelledError always propagates.
"""

from __future__ import annotations

import random
from typing import Protocol, runtime_checkable

from gpuctl.state.store import ClusterStore


@runtime_checkable
class Source(Protocol):
    name: str

    async def run(self, store: ClusterStore) -> None: ...


def describe_crash(error: BaseException) -> str:
    """One line for an unexpected error: "'name' (KeyError)"; a task group's first error, not the group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = " ".join(str(error).split())
    return f"{text} ({type(error).__name__})" if text else type(error).__name__


class Backoff:
    """Exponential delays with jitter: base, 2*base, 4*base ... capped, each scaled by a random 0.5-1.0.

    The jitter spreads reconnects of many clients (and of gpuctl's own watchers)
    after an API server restart, so they don't arrive as one thundering herd.
    """

    def __init__(self, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return delay * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0
