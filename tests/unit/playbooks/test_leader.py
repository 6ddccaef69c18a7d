"""The election's timing rules (the election itself runs against the real API server: tests/integration/test_leader.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpuctl.config import load_settings
from gpuctl.playbooks.leader import LEADER, Election


def test_the_defaults_are_client_go_s_and_the_lease_has_a_plain_name() -> None:
    assert Election() == Election(lease_s=15, renew_deadline_s=10, retry_s=2)
    settings = load_settings(demo=True, leader_lease_s="20s", leader_renew_deadline_s=12, leader_retry_s=3)
    assert Election.of(settings) == Election(lease_s=20, renew_deadline_s=12, retry_s=3)
    assert LEADER.lease_name == "gpuctl-leader"


@pytest.mark.parametrize(("lease", "deadline", "retry"), [(10, 10, 2), (10, 12, 2), (10, 5, 5), (10, 5, 6)])
def test_retry_under_renew_deadline_under_lease(lease: int, deadline: float, retry: float) -> None:
    with pytest.raises(ValidationError, match=r"retry .* < renew deadline .* < lease"):
        Election(lease_s=lease, renew_deadline_s=deadline, retry_s=retry)
