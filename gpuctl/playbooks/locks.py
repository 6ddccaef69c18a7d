"""One playbook run at a time per target (a node, a pool, a namespace): Leases as locks.

A lock is a coordination.k8s.io/v1 Lease named after the target, in gpuctl's
namespace. The API server does the arbitration: creating a Lease that exists
is refused (409), and taking over an expired one is a replace conditional on
the resourceVersion that was read, so of two processes racing for it exactly
one wins, on any number of machines.

Not impersonated, on purpose: a Lease is gpuctl's own bookkeeping, not a change
made to the cluster for a person. The service identity owns the Leases in its
namespace (ClusterRole gpuctl:operator-state, bound there); requesters need no
rights on them, and none of them can break another person's lock.

Expiry is judged with the local clock against the holder's last renewTime, so
machines' clocks must roughly agree (as for Kubernetes' own leader election);
`duration_s` should dwarf the skew.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import GpuctlError, LockHeld
from gpuctl.playbooks.kubeapi import JSON, MERGE_PATCH, ApiResponse, KubeApi, check, collection_path, refusal

log = logging.getLogger(__name__)

TARGET_ANNOTATION = "gpuctl.io/lock-target"

LockKind = Literal["node", "pool", "namespace", "cluster_queue", "executor"]  # executor: the leader Lease (leader.py)


class LockTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LockKind
    name: str = Field(min_length=1)

    @property
    def lease_name(self) -> str:
        """A valid, stable Lease name for any target name (a readable slug plus a hash that keeps names distinct);
        the leader's is plainly gpuctl-<name> (operators look for it by name)."""
        if self.kind == "executor":
            return f"gpuctl-{self.name}"
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:32]
        digest = hashlib.sha256(f"{self.kind}/{self.name}".encode()).hexdigest()[:10]
        return f"gpuctl-{self.kind}-{slug}-{digest}" if slug else f"gpuctl-{self.kind}-{digest}"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class HeldLock(BaseModel):
    """A Lease this process holds, at the resourceVersion it last wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: LockTarget
    holder: str
    namespace: str
    uid: str
    resource_version: str
    acquired_at: datetime
    renewed_at: datetime
    duration_s: int
    transitions: int = 0

    @property
    def expires_at(self) -> datetime:
        return self.renewed_at + timedelta(seconds=self.duration_s)


def _micro_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class LeaseLocks:
    """Acquire, renew and release per-target Leases as `holder` (unique per run, e.g. "<host>/<run name>")."""

    def __init__(self, api: KubeApi, namespace: str, holder: str, *, duration_s: int = 60, clock: Clock = utcnow) -> None:
        if duration_s < 1:
            raise ValueError("a lease lasts at least a second")
        self.api = api
        self.namespace = namespace
        self.holder = holder
        self.duration_s = duration_s
        self._clock = clock
        self._collection = collection_path("coordination.k8s.io", "v1", "leases", namespace)

    def _lease(self, target: LockTarget, *, acquired: datetime, renewed: datetime, transitions: int, version: str | None) -> JSON:
        metadata: JSON = {
            "name": target.lease_name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "gpuctl"},
            "annotations": {TARGET_ANNOTATION: f"{target.kind}/{target.name}"},
        }
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": _micro_time(acquired),
                "renewTime": _micro_time(renewed),
                "leaseTransitions": transitions,
            },
        }

    def _held(self, target: LockTarget, response: ApiResponse, *, what: str) -> HeldLock:
        lease = check(response, what=what)
        spec = lease["spec"]
        return HeldLock(
            target=target,
            holder=spec["holderIdentity"],
            namespace=self.namespace,
            uid=lease["metadata"]["uid"],
            resource_version=lease["metadata"]["resourceVersion"],
            acquired_at=datetime.fromisoformat(spec["acquireTime"]),
            renewed_at=datetime.fromisoformat(spec["renewTime"]),
            duration_s=spec["leaseDurationSeconds"],
            transitions=spec.get("leaseTransitions") or 0,
        )

    def _held_by_other(self, target: LockTarget, lease: JSON | None) -> LockHeld:
        if lease is None:
            return LockHeld(f"the lock on {target} was lost: its Lease was deleted", holder="", since=None)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or "nobody"
        since = _parse_time(spec.get("acquireTime"))
        renewed = _parse_time(spec.get("renewTime"))
        until = renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or 0) if renewed else None
        when = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        return LockHeld(
            f"{target} is locked by {holder}{when} (Lease {self.namespace}/{target.lease_name})",
            holder=holder,
            since=since,
            hint=f"wait for that run to finish, or for its lease to expire at {until:%H:%M:%S} UTC" if until else None,
        )

    async def _read(self, target: LockTarget) -> JSON | None:
        response = await self.api.request("GET", f"{self._collection}/{target.lease_name}")
        if response.call.status == 404:
            return None
        return check(response, what=f"read Lease {self.namespace}/{target.lease_name}")

    def _free(self, lease: JSON) -> bool:
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity") or spec["holderIdentity"] == self.holder:
            return True  # released, or ours from before a restart
        renewed = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or 0
        return renewed is None or renewed + timedelta(seconds=duration) < self._clock()

    async def acquire(self, target: LockTarget) -> HeldLock:
        """Take the target's lock, or raise LockHeld naming the holder and since when."""
        what = f"lock {target}"
        for _ in range(3):  # a Lease released between our create and our read: create again
            now = self._clock()
            body = self._lease(target, acquired=now, renewed=now, transitions=0, version=None)
            created = await self.api.request("POST", self._collection, body=body)
            if created.ok:
                return self._held(target, created, what=what)
            if created.call.reason != "AlreadyExists":
                raise refusal(created, what=what)
            lease = await self._read(target)
            if lease is None:
                continue
            if not self._free(lease):
                raise self._held_by_other(target, lease)
            # Expired (or released): take it over, only if nobody else wrote it since we read it.
            changed = lease["spec"].get("holderIdentity") != self.holder  # ours from before a restart: no transition
            transitions = int(lease["spec"].get("leaseTransitions") or 0) + changed
            version = lease["metadata"]["resourceVersion"]
            body = self._lease(target, acquired=now, renewed=now, transitions=transitions, version=version)
            taken = await self.api.request("PUT", f"{self._collection}/{target.lease_name}", body=body)
            if taken.ok:
                return self._held(target, taken, what=what)
            if taken.call.status != 409:
                raise refusal(taken, what=what)
            raise self._held_by_other(target, await self._read(target))  # someone else took it over first
        raise GpuctlError(f"cannot {what}: its Lease keeps disappearing", hint="is another tool deleting gpuctl's Leases?")

    async def renew(self, lock: HeldLock) -> HeldLock:
        """Extend the lease; LockHeld if it was taken over (it had expired) or deleted meanwhile."""
        patch: JSON = {
            "metadata": {"resourceVersion": lock.resource_version},
            "spec": {"holderIdentity": self.holder, "renewTime": _micro_time(self._clock())},
        }
        response = await self.api.request(
            "PATCH", f"{self._collection}/{lock.target.lease_name}", body=patch, content_type=MERGE_PATCH
        )
        if response.call.status in (404, 409):
            raise self._held_by_other(lock.target, await self._read(lock.target))
        return self._held(lock.target, response, what=f"renew the lock on {lock.target}")

    async def release(self, lock: HeldLock) -> None:
        """Delete the Lease, only if it is still the one we hold (uid and resourceVersion preconditions)."""
        body: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": lock.uid, "resourceVersion": lock.resource_version},
        }
        response = await self.api.request("DELETE", f"{self._collection}/{lock.target.lease_name}", body=body)
        if response.call.status in (404, 409):
            log.warning("lock on %s was no longer ours to release (%s)", lock.target, response.call.message)
            return
        check(response, what=f"release the lock on {lock.target}")

    async def vacate(self, lock: HeldLock) -> None:
        """Give the Lease up but keep it (holderIdentity cleared, only if it is still the one we hold), so
        its leaseTransitions count goes on: how a leader steps down."""
        patch: JSON = {"metadata": {"resourceVersion": lock.resource_version}, "spec": {"holderIdentity": None}}
        response = await self.api.request(
            "PATCH", f"{self._collection}/{lock.target.lease_name}", body=patch, content_type=MERGE_PATCH
        )
        if response.call.status in (404, 409):
            log.warning("lease %s was no longer ours to give up (%s)", lock.target.lease_name, response.call.message)
            return
        check(response, what=f"give up the lease {lock.target.lease_name}")

    @contextlib.asynccontextmanager
    async def hold(self, target: LockTarget) -> AsyncIterator[Hold]:
        """Acquire, renew every third of the duration in the background, release on exit."""
        sent = time.monotonic()
        hold = Hold(await self.acquire(target), valid_s=self.duration_s * 2 / 3, since=sent)
        renewing = asyncio.create_task(self._keep(hold))
        try:
            yield hold
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if hold.lost is None:
                await self.release(hold.lock)

    async def _keep(self, hold: Hold) -> None:
        while True:
            await asyncio.sleep(self.duration_s / 3)
            sent = time.monotonic()
            try:
                hold.renewed(await self.renew(hold.lock), since=sent)
            except LockHeld as lost:
                hold.lost = lost
                log.error("lost the lock on %s: %s", hold.lock.target, lost)
                return
            except GpuctlError as e:  # unreachable for a moment: the lease has time left, try again
                log.warning("renewing the lock on %s failed: %s", hold.lock.target, e)


class Hold:
    """A lock being held by `LeaseLocks.hold`: call `check()` before each step of the run.

    It is good for `valid_s` (two thirds of the lease) after the last renewal that succeeded, counted
    from when that renewal was sent on the monotonic clock: others may take the Lease only a whole
    lease after its renewTime, so a holder that was paused or cut off stops before anyone else can
    have it (given clocks that run at about the same rate)."""

    def __init__(self, lock: HeldLock, *, valid_s: float, since: float) -> None:
        self.lock = lock
        self.lost: LockHeld | None = None
        self._valid_s = valid_s
        self._valid_until = since + valid_s

    def renewed(self, lock: HeldLock, *, since: float) -> None:
        """A renewal sent at monotonic time `since` succeeded."""
        self.lock = lock
        self._valid_until = since + self._valid_s

    def check(self) -> None:
        """Raise LockHeld if the lease was lost, or not renewed for valid_s (it may have expired and been taken)."""
        if self.lost is not None:
            raise self.lost
        if time.monotonic() >= self._valid_until:
            raise LockHeld(
                f"the lock on {self.lock.target} was not renewed for {self._valid_s:g} s: it may have expired and "
                "been taken over",
                holder=self.lock.holder,
                since=self.lock.acquired_at,
            )
