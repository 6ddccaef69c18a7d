from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from gpuctl.errors import LockHeld
from gpuctl.playbooks.locks import HeldLock, Hold, LockTarget

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "target",
    [
        LockTarget(kind="node", name="ip-10-0-1-17.ec2.internal"),
        LockTarget(kind="pool", name="A100_80GB pool"),
        LockTarget(kind="namespace", name="team-a"),
        LockTarget(kind="pool", name="___"),
        LockTarget(kind="node", name="x" * 253),
    ],
)
def test_lease_names_are_valid_for_any_target(target: LockTarget) -> None:
    assert DNS_LABEL.match(target.lease_name) and len(target.lease_name) <= 63


def test_targets_that_slug_alike_get_different_leases() -> None:
    names = {LockTarget(kind="pool", name=n).lease_name for n in ("a_b", "a-b", "A-B", "a.b")}
    assert len(names) == 4
    assert LockTarget(kind="pool", name="a").lease_name != LockTarget(kind="node", name="a").lease_name


def _held(target: LockTarget) -> HeldLock:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    return HeldLock(target=target, holder="executor-0/run-1", namespace="gpuctl", uid="u", resource_version="1",
                    acquired_at=now, renewed_at=now, duration_s=60)  # fmt: skip


def test_a_hold_not_renewed_for_two_thirds_of_its_lease_refuses_the_next_write() -> None:
    """Others may take the Lease a whole lease after its last renewal: the holder stops well before."""
    target = LockTarget(kind="node", name="gpu-node-7")
    fresh = Hold(_held(target), valid_s=40, since=time.monotonic())
    fresh.check()
    stale = Hold(_held(target), valid_s=40, since=time.monotonic() - 40)
    with pytest.raises(LockHeld, match="the lock on node gpu-node-7 was not renewed for 40 s"):
        stale.check()
    stale.renewed(_held(target), since=time.monotonic())  # a renewal that succeeded: good again
    stale.check()
