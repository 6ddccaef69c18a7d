"""relabel-mig's undo: the inverse Draft from the recorded before-state, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuctl.identity import Identity, Requester
from gpuctl.migparted import MIG_CONFIG_LABEL
from gpuctl.playbooks.drain import cordon_step, uncordon_step
from gpuctl.playbooks.locks import LockTarget
from gpuctl.playbooks.logic import Report, StepOutcome
from gpuctl.playbooks.mig_node import LAYOUT_FIELD, expected_resources, label_change, reconfigures
from gpuctl.playbooks.plan import Change, Plan, Step, TargetRef
from gpuctl.playbooks.relabel_mig import LOGIC, NAME

NODE = TargetRef(kind="Node", name="n1", uid="u1", resource_version="41")
POD = TargetRef(kind="Pod", namespace="team-a", name="train", uid="p1", resource_version="9")


def plan(before: str | None = "all-disabled", *, cordons: bool = True) -> Plan:
    label = Step(
        action="set_node_label",
        target=NODE,
        gpus=8,
        changes=(
            Change(field=f"labels[{MIG_CONFIG_LABEL}]", before=before, after="all-1g.10gb"),
            Change(field=LAYOUT_FIELD, before="8× MIG off", after="8× 7×1g.10gb"),
            Change(field="status.allocatable[nvidia.com/gpu]", before=8, after=56),
        ),
    )
    evict = Step(action="evict_pods", target=POD)
    steps = [cordon_step(NODE), evict, label, uncordon_step(NODE, "after")] if cordons else [evict, label]
    return Plan(
        playbook=NAME,
        parameters={"node": "n1", "profile": "all-1g.10gb", "drain": True},
        requester=Requester(identity=Identity(user="user-a"), via="cli"),
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        steps=tuple(steps),
    )


def report(label_status: str, index: int = 2) -> Report:
    return Report(outcomes=(StepOutcome(index=index, status=label_status, message="m"),))  # type: ignore[arg-type]


def test_undo_relabels_back_with_the_same_cordon_and_no_evictions() -> None:
    draft = LOGIC.undo(plan(), report("done"))
    assert draft is not None and draft.blocked == []
    assert [s.action for s in draft.steps] == ["cordon_node", "set_node_label", "uncordon_node"]
    assert {s.target.resource_version for s in draft.steps} == {None}  # read again when it runs
    assert {s.target.uid for s in draft.steps} == {"u1"}
    label = draft.steps[1]
    assert (label_change(label).before, label_change(label).after) == ("all-1g.10gb", "all-disabled")
    assert expected_resources(label) == {"nvidia.com/gpu": 8} and reconfigures(label)
    assert draft.locks == [LockTarget(kind="node", name="n1")]
    assert any("evicts nothing" in w and "drain=true" in w for w in draft.warnings)


def test_undo_of_a_node_that_was_cordoned_leaves_it_cordoned() -> None:
    draft = LOGIC.undo(plan(cordons=False), report("done", index=1))
    assert draft is not None and [s.action for s in draft.steps] == ["set_node_label"]


def test_nothing_to_undo_when_the_label_never_changed_for_good() -> None:
    assert LOGIC.undo(plan(), report("failed")) is None
    assert LOGIC.undo(plan(), Report()) is None


def test_undo_to_no_label_is_refused() -> None:
    draft = LOGIC.undo(plan(before=None), report("done"))
    assert draft is not None and not draft.steps
    assert draft.blocked == [
        f"node n1 had no {MIG_CONFIG_LABEL} before: choose a profile (e.g. all-disabled) and plan relabel-mig"
    ]
