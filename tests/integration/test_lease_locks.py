"""One run per target: Leases arbitrated by the real API server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import LockHeld
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.locks import HeldLock, LeaseLocks, LockTarget
from gpuctl.sources.kube.connect import KubeConnection
from testbed.kube import RestClient
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

NODE = LockTarget(kind="node", name="gpu-node-7")


def _an_hour_later() -> datetime:
    """A clock an hour ahead: every lease written now looks expired to it."""
    return utcnow() + timedelta(hours=1)


@pytest.fixture
def namespace(gpuctl_namespace: str) -> str:
    """Where the operator (not impersonating anyone) owns its Leases."""
    return gpuctl_namespace


def _locks(connection: KubeConnection, namespace: str, holder: str, *, duration_s: int = 60, clock: Clock = utcnow) -> LeaseLocks:
    return LeaseLocks(KubeApi(connection), namespace, holder, duration_s=duration_s, clock=clock)


async def test_of_two_concurrent_acquirers_one_wins(operator_connection: KubeConnection, namespace: str) -> None:
    first = _locks(operator_connection, namespace, "cli@laptop/run-1")
    second = _locks(operator_connection, namespace, "executor-0/run-2")
    outcomes = await asyncio.gather(first.acquire(NODE), second.acquire(NODE), return_exceptions=True)
    (won,) = [o for o in outcomes if isinstance(o, HeldLock)]
    (lost,) = [o for o in outcomes if isinstance(o, LockHeld)]
    assert lost.holder == won.holder
    assert lost.since == won.acquired_at
    assert str(NODE) in str(lost) and won.holder in str(lost)

    winner, loser = (first, second) if won.holder == first.holder else (second, first)
    with pytest.raises(LockHeld):
        await loser.acquire(NODE)
    other_target = await loser.acquire(LockTarget(kind="node", name="gpu-node-8"))  # other targets are free
    assert other_target.holder == loser.holder

    renewed = await winner.renew(won)
    assert renewed.renewed_at >= won.renewed_at and renewed.resource_version != won.resource_version
    await winner.release(renewed)
    taken = await loser.acquire(NODE)
    assert taken.holder == loser.holder


async def test_an_expired_lease_is_taken_over_once(
    admin: RestClient, operator_connection: KubeConnection, namespace: str
) -> None:
    crashed = _locks(operator_connection, namespace, "executor-0/run-3", duration_s=30)
    stale = await crashed.acquire(NODE)

    # Two processes that both see it expired race to take it over: the resourceVersion decides.
    takers = [_locks(operator_connection, namespace, f"executor-1/run-{n}", clock=_an_hour_later) for n in (4, 5)]
    outcomes = await asyncio.gather(*(t.acquire(NODE) for t in takers), return_exceptions=True)
    (took,) = [o for o in outcomes if isinstance(o, HeldLock)]
    assert sum(isinstance(o, LockHeld) for o in outcomes) == 1
    lease = (await admin.get("Lease", NODE.lease_name, namespace)).body
    assert lease["spec"]["holderIdentity"] == took.holder
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["metadata"]["annotations"]["gpuctl.io/lock-target"] == "node/gpu-node-7"

    with pytest.raises(LockHeld) as lost:  # the old holder finds out when it renews
        await crashed.renew(stale)
    assert lost.value.holder == took.holder
    await crashed.release(stale)  # no longer its to release: a no-op
    assert (await admin.get("Lease", NODE.lease_name, namespace)).body["spec"]["holderIdentity"] == took.holder


async def test_hold_renews_and_releases(admin: RestClient, operator_connection: KubeConnection, namespace: str) -> None:
    target = LockTarget(kind="pool", name="A100_80GB pool")
    locks = _locks(operator_connection, namespace, "executor-0/run-6", duration_s=3)
    async with locks.hold(target) as hold:
        first_version = hold.lock.resource_version
        with pytest.raises(LockHeld):
            await _locks(operator_connection, namespace, "executor-1/run-7").acquire(target)
        await poll(lambda: hold.lock.resource_version != first_version, timeout_s=10, what="a renewal")
        hold.check()
    assert (await admin.get("Lease", target.lease_name, namespace)).status == 404
