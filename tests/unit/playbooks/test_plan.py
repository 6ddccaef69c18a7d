"""The plan as a value: its fingerprint covers what it does and where, and it reads back from JSON."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.policy import Scope
from tests.unit.playbooks.plans import REQUESTER, quota_plan, quota_step


def test_the_fingerprint_covers_steps_scopes_and_locks_not_who_or_when() -> None:
    plan = quota_plan()
    later = plan.model_copy(update={"created_at": plan.created_at.replace(hour=13), "requester": REQUESTER.model_copy(update={"via": "slack"})})
    assert later.fingerprint == plan.fingerprint
    for change in (
        {"steps": (quota_step(after="9"),)},
        {"scopes": (Scope(kind="namespace", name="team-b"),)},
        {"locks": (LockTarget(kind="namespace", name="team-b"),)},
        {"parameters": {"namespace": "team-a", "quota": 9}},
    ):
        assert plan.model_copy(update=change).fingerprint != plan.fingerprint
    assert plan.fingerprint.startswith("sha256:") and plan.gpus_affected == 4


def test_a_plan_reads_back_from_its_json_and_its_fingerprint_must_match() -> None:
    plan = quota_plan(quota_step(), quota_step(name="gpus-2", before="2", after="8"))
    data = plan.model_dump(mode="json")
    assert data["fingerprint"] == plan.fingerprint and data["gpus_affected"] == 10
    assert Plan.model_validate(data) == plan
    data["steps"][1]["changes"][0]["after"] = "80"  # edited after it was fingerprinted
    with pytest.raises(ValidationError, match="does not match the plan's content"):
        Plan.model_validate(data)


def test_the_fingerprint_survives_the_api_servers_number_spelling() -> None:
    """Kubernetes stores a PlaybookRun's 600.0 and gives back 600: both must hash alike."""
    plan = quota_plan().model_copy(update={"parameters": {"namespace": "team-a", "quota": 8, "revert_after": 600.0}})
    data = plan.model_dump(mode="json")
    data["parameters"]["revert_after"] = 600
    assert Plan.model_validate(data).fingerprint == plan.fingerprint
