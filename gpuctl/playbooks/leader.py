"""Leader election among `gpuctl serve` / `gpuctl executor` replicas: a coordination.k8s.io/v1 Lease.

The Lease is `gpuctl-leader` in gpuctl's namespace (LEADER). A replica campaigns
by taking it (locks.py: create, or a takeover of an expired or vacated Lease
conditional on the resourceVersion it read, so of two campaigners exactly one
wins; leaseTransitions counts changes of holder); holderIdentity is the
replica's name (the pod's name in a cluster). The leader renews every
`retry_s`; when no renewal has succeeded for `renew_deadline_s` it stops
leading, and it stops at once when a renewal finds the Lease taken or deleted.

Fencing: `check()` (awaited before every write a run makes, and before its
claim) raises NotLeading unless a renewal — or the acquisition — that was SENT
less than `renew_deadline_s` ago succeeded, measured on the monotonic clock.
Another replica may take the Lease only `lease_s` after the last renewTime the
leader wrote, and renew_deadline_s < lease_s, so by the time anyone else leads,
the old leader's runs refuse to write (given clocks that run at about the same
rate; no agreement on the time of day is needed for this part).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpuctl.clock import Clock, utcnow
from gpuctl.config import Settings
from gpuctl.errors import GpuctlError, LockHeld, NotLeading
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.locks import HeldLock, LeaseLocks, LockTarget

log = logging.getLogger(__name__)

LEADER = LockTarget(kind="executor", name="leader")  # Lease gpuctl-leader


class Election(BaseModel):
    """The election's timing (client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lease_s: int = Field(15, ge=1, description="leaseDurationSeconds: how long a silent leader keeps the Lease")
    renew_deadline_s: float = Field(10.0, gt=0, description="a leader that could not renew for this long stops leading")
    retry_s: float = Field(2.0, gt=0, description="how often the leader renews and the others try to take over")

    @classmethod
    def of(cls, settings: Settings) -> Election:
        """The timing `gpuctl serve` and `gpuctl executor` read from settings (leader_*)."""
        return cls(lease_s=settings.leader_lease_s, renew_deadline_s=settings.leader_renew_deadline_s,
                   retry_s=settings.leader_retry_s)  # fmt: skip

    @model_validator(mode="after")
    def _ordered(self) -> Election:
        if not self.retry_s < self.renew_deadline_s < self.lease_s:
            raise ValueError(
                f"leader election needs retry ({self.retry_s:g} s) < renew deadline ({self.renew_deadline_s:g} s) "
                f"< lease ({self.lease_s} s)"
            )
        return self


class Leadership:
    """One replica's part in the election: `campaign()` until elected, then `keep()` until lost or `step_down()`."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        identity: str,
        election: Election,
        *,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.election = election
        self.locks = LeaseLocks(api, namespace, identity, duration_s=election.lease_s, clock=clock)
        self.leading = asyncio.Event()
        self.lease: HeldLock | None = None  # ours, while leading
        self.leader: str | None = None  # who leads, as last seen (us, another replica, or nobody)
        self.last_contact: float | None = None  # monotonic time of the last answer from the API server
        self._monotonic = monotonic
        self._valid_until = 0.0

    @property
    def lease_name(self) -> str:
        return LEADER.lease_name

    def valid(self) -> bool:
        """Whether this replica may act as the leader right now (see the module docstring)."""
        return self._monotonic() < self._valid_until

    def check(self) -> None:
        """NotLeading unless this replica leads now: the fence a run's guard awaits before each write."""
        if not self.valid():
            raise NotLeading(
                f"{self.identity} no longer leads (Lease {self.locks.namespace}/{self.lease_name}): "
                "the run stops before its next write"
            )

    def reachable(self, within_s: float) -> bool:
        """Whether the API server answered this replica within the last `within_s` seconds."""
        return self.last_contact is not None and self._monotonic() - self.last_contact <= within_s

    async def campaign(self, stopping: asyncio.Event) -> bool:
        """Try to take the Lease every retry_s until it is ours (True) or `stopping` is set (False)."""
        while not stopping.is_set():
            sent = self._monotonic()
            try:
                self.lease = await self.locks.acquire(LEADER)
            except LockHeld as e:
                self.last_contact, self.leader = self._monotonic(), e.holder or None
                log.debug("%s follows: %s", self.identity, e)
            except GpuctlError as e:
                log.warning("%s could not reach the leader Lease: %s", self.identity, e)
            else:
                self._elected(sent)
                log.info("%s leads (Lease %s, transitions %d)", self.identity, self.lease_name, self.lease.transitions)
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.election.retry_s):
                    await stopping.wait()
        return False

    def _elected(self, sent: float) -> None:
        self.last_contact = self._monotonic()
        self._valid_until = sent + self.election.renew_deadline_s
        self.leader = self.identity
        self.leading.set()

    async def keep(self) -> None:
        """Renew every retry_s while leading; return once leadership is lost (fenced from that moment).

        Cancelled, it stops leading too; `step_down()` then vacates the Lease."""
        try:
            while self.lease is not None:
                await asyncio.sleep(self.election.retry_s)
                if not self.valid():
                    log.error("%s stops leading: no renewal succeeded for %g s", self.identity, self.election.renew_deadline_s)
                    return
                sent = self._monotonic()
                try:
                    self.lease = await self.locks.renew(self.lease)
                except LockHeld as e:
                    self.lease, self.last_contact, self.leader = None, self._monotonic(), e.holder or None
                    log.error("%s stops leading: %s", self.identity, e)
                    return
                except GpuctlError as e:  # unreachable for a moment: the renew deadline decides
                    log.warning("%s could not renew the leader Lease: %s", self.identity, e)
                else:
                    self._elected(sent)
        finally:
            self._lost()

    async def step_down(self) -> None:
        """Stop leading now and vacate the Lease, so another replica takes over without waiting for it to expire."""
        lease, self.lease = self.lease, None
        self._lost()
        if lease is not None:
            try:
                await self.locks.vacate(lease)
            except GpuctlError as e:  # it expires on its own
                log.warning("%s could not vacate the leader Lease: %s", self.identity, e)

    def _lost(self) -> None:
        self._valid_until = 0.0
        self.leading.clear()
        if self.leader == self.identity:
            self.leader = None
