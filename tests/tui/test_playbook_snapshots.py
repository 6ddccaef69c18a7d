"""Screenshots of the plan and progress screens on fixed data (a fixed plan, fixed audit records, fixed clock).

The screens are built from values here (no engine: nothing is planned or followed);
their engine-driven flows are tests/integration/test_tui_playbooks.py's. Accept
intended changes with `--snapshot-update` and review the SVGs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App
from textual.screen import Screen

from gpuctl.audit.records import GENESIS_HASH, ApiCall, AuditEvent, AuditRecord, EventKind
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.execution import Outcome
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.logic import Check, Report, StepOutcome, Verification
from gpuctl.playbooks.plan import Change, Plan, Skipped, Step, TargetRef
from gpuctl.playbooks.policy import Scope
from gpuctl.tui.playbooks.offers import Offer
from gpuctl.tui.playbooks.plan_screen import PlanScreen
from gpuctl.tui.playbooks.progress_screen import ProgressScreen

SIZE = (140, 40)
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
CATALOG = load_catalog()
REQUESTER = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="tui", detail="laptop")
RUN_ID = "reclaim-idle-gpus-3f9a1c0de2b44a17"


def pod(name: str, node: str) -> TargetRef:
    return TargetRef(kind="Pod", name=name, namespace="team-a", uid=f"uid-{name}", resource_version="41")


def reclaim_plan() -> Plan:
    steps = tuple(
        Step(action="evict_pods", target=pod(name, "h100-0"), gpus=gpus,
             changes=(Change(field="status.phase", before="Running", after="evicted"),), detail=f"idle {idle}")
        for name, gpus, idle in (("train-7", 2, "3h10m"), ("notebook-2", 1, "2h05m"))
    )  # fmt: skip
    return Plan(
        playbook="reclaim-idle-gpus", parameters={"mode": "immediate", "namespace": "team-a", "max_pods": 2},
        requester=REQUESTER, created_at=T0, snapshot_generation=7, steps=steps,
        skipped=(Skipped(target=pod("notebook-7", "h100-1"), reason="its PodDisruptionBudget team-a/nb allows no disruption now"),),
        warnings=("2 of the pods belong to Deployment/train: its controller will start new pods",),
        dry_run="server", scopes=(Scope(kind="namespace", name="team-a"),),
    )  # fmt: skip


def records() -> list[AuditRecord]:
    events: list[tuple[EventKind, dict[str, Any]]] = [
        (EventKind.REQUESTED, {"playbook": "reclaim-idle-gpus", "idempotency_key": "tui:1"}),
        (EventKind.AUTHORIZED, {"policy": ["user-a may run reclaim-idle-gpus on team-a: role team-a-reclaimer"]}),
        (EventKind.EXECUTION_STARTED, {"fingerprint": "sha256:0f", "by": "laptop/1"}),
        (EventKind.STEP, {"step": 0, "message": "evicting 1/2: team-a/train-7"}),
        (EventKind.API_CALL, {**ApiCall(method="POST", path="/api/v1/namespaces/team-a/pods/train-7/eviction", status=201,
                                        audit_id="a1", acting_as=REQUESTER.identity, dry_run=False).model_dump(mode="json"),
                              "step": 0}),
        (EventKind.STEP, {"step": 1, "message": "PDB blocked team-a/notebook-2, retrying in 10 s"}),
        (EventKind.STEP, {"step": 1, "message": "evicting 2/2: team-a/notebook-2"}),
        (EventKind.VERIFIED, {"ok": True, "checks": [{"name": "pods gone", "ok": True, "detail": "2 of 2"}]}),
        (EventKind.COMPLETED, {"phase": "Succeeded", "message": "2 pods evicted, 3 GPUs freed"}),
    ]  # fmt: skip
    out: list[AuditRecord] = []
    previous = GENESIS_HASH
    for seq, (kind, payload) in enumerate(events, start=1):
        record = AuditRecord.seal(AuditEvent(run_id=RUN_ID, kind=kind, actor=REQUESTER, payload=payload),
                                  seq=seq, time=T0 + timedelta(seconds=seq), prev_hash=previous)  # fmt: skip
        out.append(record)
        previous = record.hash
    return out


def outcome() -> Outcome:
    report = Report(outcomes=(StepOutcome(index=0, status="done", message="team-a/train-7 evicted"),
                              StepOutcome(index=1, status="done", message="team-a/notebook-2 evicted")))  # fmt: skip
    checks = Verification(checks=(Check(name="pods gone", ok=True, detail="2 of 2"),))
    return Outcome(run_id=RUN_ID, playbook="reclaim-idle-gpus", phase="Succeeded", message="2 pods evicted, 3 GPUs freed",
                   report=report, verification=checks)  # fmt: skip


class Host(App[None]):
    """One screen with gpuctl top's styles."""

    CSS_PATH = "../../gpuctl/tui/app.tcss"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.first = screen

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.push_screen(self.first)


def test_plan_screen(snap_compare) -> None:
    offer = Offer("reclaim-idle-gpus", "reclaim 2 idle pods in team-a on h100-0",
                  {"namespace": "team-a", "node": "h100-0", "max_pods": "2", "mode": "immediate"})  # fmt: skip
    screen = PlanScreen(offer, CATALOG.get("reclaim-idle-gpus"), None, plan=reclaim_plan(), key="tui:1")
    assert snap_compare(Host(screen), terminal_size=SIZE)


def test_progress_screen(snap_compare) -> None:
    screen = ProgressScreen(RUN_ID, None, records=records(), outcome=outcome(), phase="Succeeded", reversible=False)
    assert snap_compare(Host(screen), terminal_size=SIZE)
