from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from pathlib import Path

import yaml

from gpuctl.identity import Frontend, Identity, Requester
from gpuctl.playbooks.runs import Approval, PlaybookRun, RunPhase, RunRequester, RunSpec, RunStatus, StepState, run_name

CRD = Path(__file__).resolve().parents[3] / "deploy" / "crds" / "playbookruns.gpuctl.io.yaml"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _schema() -> dict:
    (version,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]


def test_the_crd_enums_are_the_python_ones() -> None:
    spec, status = _schema()["spec"]["properties"], _schema()["status"]["properties"]
    assert spec["requester"]["properties"]["via"]["enum"] == list(typing.get_args(Frontend))
    assert status["phase"]["enum"] == list(typing.get_args(RunPhase))
    assert status["steps"]["items"]["properties"]["state"]["enum"] == list(typing.get_args(StepState))
    assert status["approvals"]["items"]["properties"]["via"]["enum"] == list(typing.get_args(Frontend))


def test_the_crd_knows_every_field_the_models_write() -> None:
    """The API server prunes unknown fields: a model field missing from the schema would vanish silently."""
    spec, status = _schema()["spec"]["properties"], _schema()["status"]["properties"]
    assert set(spec) == {RunSpec.model_fields[f].alias for f in RunSpec.model_fields}
    assert set(status) == {RunStatus.model_fields[f].alias for f in RunStatus.model_fields}
    assert set(spec["requester"]["properties"]) == {RunRequester.model_fields[f].alias for f in RunRequester.model_fields}
    assert set(status["approvals"]["items"]["properties"]) == {Approval.model_fields[f].alias for f in Approval.model_fields}


def test_run_names_are_stable_valid_and_per_key() -> None:
    key = "alert:3f9a1c@2026-11-30T10:00:00Z"
    assert run_name("reclaim-idle-gpus", key) == run_name("reclaim-idle-gpus", key)
    assert run_name("reclaim-idle-gpus", key) != run_name("reclaim-idle-gpus", key + "x")
    assert DNS_SUBDOMAIN.match(run_name("reclaim-idle-gpus", "Slack Request #1 ü"))


def test_a_run_round_trips_through_its_wire_form() -> None:
    requester = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="cli", detail="laptop")
    spec = RunSpec(
        playbook="scale-pool",
        parameters={"pool": "a100", "replicas": 4},
        requester=RunRequester.of(requester),
        idempotency_key="k",
        plan={"actions": []},
        plan_fingerprint="sha256:ab",
    )
    wire = spec.wire()
    assert wire["planFingerprint"] == "sha256:ab" and wire["idempotencyKey"] == "k"
    approval = Approval(user="user-b", decision="Approved", at=datetime(2026, 11, 30, tzinfo=UTC))
    status = RunStatus(phase="Approved", approvals=(approval,))
    meta = {"name": "n", "namespace": "gpuctl", "uid": "u", "resourceVersion": "7", "creationTimestamp": "2026-11-30T10:00:00Z"}
    obj = {
        "metadata": meta,
        "spec": wire,
        "status": status.wire(),
    }
    run = PlaybookRun.from_object(obj)
    assert run.spec == spec and run.status == status
    assert run.spec.requester.requester() == requester
