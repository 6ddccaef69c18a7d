from __future__ import annotations

import re

import pytest

from gpuctl.playbooks.locks import LockTarget

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
