"""Owner chains and disruption budgets as the store joins them: exact, and incremental."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from gpuctl.model import GpuPod, Owner
from gpuctl.state.changes import diff
from gpuctl.state.disruption import BudgetIndex, budgets_for, eviction_allowed
from gpuctl.state.records import JobRecord, Kind, PdbRecord, PodRecord, ReplicaSetRecord
from gpuctl.state.selectors import LabelSelector, Requirement
from gpuctl.state.store import ClusterStore

from .factories import T0, node

APP = LabelSelector((Requirement("app", "=", frozenset({"vllm"})),))


def gpu_pod(name: str, kind: str | None, owner: str | None, *, uid: str | None = None, **kw: object) -> PodRecord:
    fields: dict[str, object] = {"labels": {"app": "vllm"}, "ready": True, "phase": "Running", **kw}
    return PodRecord(
        namespace="ml", name=name, node="n1", gpu_requests={"nvidia.com/gpu": 1}, owner_kind=kind, owner_name=owner,
        owner_uid=uid, created=T0, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def budget(name: str = "vllm", selector: LabelSelector | None = APP, allowed: int = 1, **kw: object) -> PdbRecord:
    fields = {"current_healthy": 3, "desired_healthy": 2, "observed": True, **kw}
    return PdbRecord(namespace="ml", name=name, selector=selector, disruptions_allowed=allowed, **fields)  # type: ignore[arg-type]


def listed_store(*kinds: Kind) -> ClusterStore:
    store = ClusterStore(clock=lambda: T0)
    store.replace(Kind.NODE, [node("n1", 8)])
    for kind in kinds:
        store.replace(kind, [])
    return store


def pods(store: ClusterStore) -> dict[str, GpuPod]:
    return {p.name: p for p in store.snapshot().pods}


def test_a_pod_shows_its_top_controller_once_its_owner_is_known() -> None:
    store = listed_store(Kind.REPLICASET, Kind.JOB, Kind.PDB)
    store.replace(Kind.POD, [gpu_pod("web", "ReplicaSet", "web-7d9f", uid="rs-1"), gpu_pod("train", "Job", "nightly-29")])
    before = pods(store)
    assert (before["web"].owner_kind, before["web"].owner_name) == ("ReplicaSet", "web-7d9f")  # direct owner meanwhile
    assert before["web"].owners == (Owner(kind="ReplicaSet", name="web-7d9f", uid="rs-1"),)
    store.upsert(ReplicaSetRecord("ml", "web-7d9f", "rs-1", "Deployment", "web", "d-1"))
    store.upsert(JobRecord("ml", "nightly-29", None, "CronJob", "nightly"))
    after = pods(store)
    assert (after["web"].owner_kind, after["web"].owner_name) == ("Deployment", "web")
    chain = (Owner(kind="ReplicaSet", name="web-7d9f", uid="rs-1"), Owner(kind="Deployment", name="web", uid="d-1"))
    assert after["web"].owners == chain
    assert (after["train"].owner_kind, after["train"].owner_name) == ("CronJob", "nightly")


def test_a_record_of_the_same_name_but_another_uid_is_another_object() -> None:
    store = listed_store(Kind.REPLICASET)
    store.replace(Kind.POD, [gpu_pod("web", "ReplicaSet", "web-7d9f", uid="rs-old")])
    store.upsert(ReplicaSetRecord("ml", "web-7d9f", "rs-new", "Deployment", "web"))
    assert pods(store)["web"].owner_kind == "ReplicaSet"


def test_pods_of_one_chain_share_it_and_only_they_change_when_it_does() -> None:
    store = listed_store(Kind.REPLICASET)
    rs = ReplicaSetRecord("ml", "web-7d9f", None, "Deployment", "web")
    store.replace(Kind.REPLICASET, [rs])
    store.replace(Kind.POD, [gpu_pod(f"web-{i}", "ReplicaSet", "web-7d9f") for i in range(3)] + [gpu_pod("solo", None, None)])
    first = store.snapshot()
    a, b = first.pods[1], first.pods[2]
    assert a.owners is b.owners  # one tuple for every pod of the chain
    store.upsert(dataclasses.replace(rs))  # an equal record (a status update): nothing to redo
    assert store.snapshot().pods == first.pods and all(x is y for x, y in zip(store.snapshot().pods, first.pods, strict=True))
    store.upsert(dataclasses.replace(rs, owner_name="web-v2"))
    second = store.snapshot()
    changes = store.changes(first, second)
    assert changes == diff(first, second) and changes.pods == {"ml/web-0", "ml/web-1", "ml/web-2"}


def test_budgets_apply_by_selector_and_two_make_eviction_impossible() -> None:
    store = listed_store(Kind.PDB)
    store.replace(Kind.POD, [gpu_pod("a", None, None), gpu_pod("b", None, None, labels={"app": "other"})])
    assert pods(store)["a"].disruption_allowed is True and pods(store)["a"].pdbs == ()
    store.upsert(budget(allowed=0))
    got = pods(store)
    assert got["a"].pdbs == ("vllm",) and got["a"].disruption_allowed is False
    assert got["b"].pdbs == () and got["b"].disruption_allowed is True
    store.upsert(budget(allowed=1))
    assert pods(store)["a"].disruption_allowed is True
    store.upsert(budget("everything", LabelSelector((Requirement("app", "Exists"),))))
    got = pods(store)
    assert got["a"].pdbs == ("everything", "vllm") and got["a"].disruption_allowed is False  # the API answers 500
    assert got["b"].pdbs == ("everything",) and got["b"].disruption_allowed is True
    snap = store.snapshot()
    assert [p.key for p in snap.pdbs] == ["ml/everything", "ml/vllm"] and snap.pdbs[1].selector == "app=vllm"


def test_an_empty_selector_covers_every_pod_of_its_namespace_and_a_missing_one_none() -> None:
    store = listed_store(Kind.PDB)
    store.replace(Kind.POD, [gpu_pod("a", None, None)])
    store.replace(Kind.PDB, [budget("empty", LabelSelector(), allowed=0), budget("none", None, allowed=0)])
    assert pods(store)["a"].pdbs == ("empty",) and pods(store)["a"].disruption_allowed is False
    assert [p.selector for p in store.snapshot().pdbs] == ["", None]


def test_unknown_budgets_give_no_verdict_except_for_pods_that_skip_them() -> None:
    store = listed_store()  # budgets never listed
    store.replace(Kind.POD, [gpu_pod("a", None, None), gpu_pod("p", None, None, phase="Pending")])
    assert pods(store)["a"].disruption_allowed is None and pods(store)["p"].disruption_allowed is True
    store.replace(Kind.PDB, [budget(allowed=0)])
    assert pods(store)["a"].disruption_allowed is False
    store.set_unreadable({Kind.PDB})
    assert pods(store)["a"].disruption_allowed is None


def test_eviction_rules() -> None:
    ok = budget()
    assert eviction_allowed(phase="Running", deleting=True, ready=True, budgets=[budget(allowed=0)]) is True
    assert eviction_allowed(phase="Succeeded", deleting=False, ready=False, budgets=None) is True
    assert eviction_allowed(phase="Running", deleting=False, ready=True, budgets=[ok]) is True
    assert eviction_allowed(phase="Running", deleting=False, ready=True, budgets=[budget(observed=False)]) is False  # 429
    assert eviction_allowed(phase="Running", deleting=False, ready=True, budgets=[budget(allowed=-1)]) is False  # 403
    # An unready pod goes when the budget is healthy without it, even with no disruption left.
    assert eviction_allowed(phase="Running", deleting=False, ready=False, budgets=[budget(allowed=0)]) is True
    assert eviction_allowed(phase="Running", deleting=False, ready=False, budgets=[budget(allowed=0, current_healthy=1)]) is False
    assert eviction_allowed(phase="Running", deleting=False, ready=False, budgets=[budget(allowed=0, desired_healthy=0)]) is False
    assert eviction_allowed(phase="Running", deleting=False, ready=True, budgets=[ok, ok]) is False


def test_a_controller_that_owns_itself_ends_its_chain_and_its_pod_can_go() -> None:
    # An ownerReference loop: the chain repeats the controller up to MAX_DEPTH; the pod's
    # lookups name it once, so the pod leaving unindexes it once (it raised KeyError before).
    store = listed_store(Kind.REPLICASET)
    store.replace(Kind.POD, [gpu_pod("web", "ReplicaSet", "loop")])
    store.replace(Kind.REPLICASET, [ReplicaSetRecord("ml", "loop", None, "ReplicaSet", "loop", None)])
    assert {o.name for o in pods(store)["web"].owners} == {"loop"}
    store.replace(Kind.POD, [])
    assert pods(store) == {}


LABEL_KEYS, LABEL_VALUES = ("app", "tier", "gpu"), ("a", "b", "c")
requirements = st.one_of(
    st.builds(Requirement, st.sampled_from(LABEL_KEYS), st.just("="), st.sampled_from(LABEL_VALUES).map(lambda v: frozenset({v}))),
    st.builds(Requirement, st.sampled_from(LABEL_KEYS), st.sampled_from(["In", "NotIn"]),
              st.frozensets(st.sampled_from(LABEL_VALUES), min_size=1)),
    st.builds(Requirement, st.sampled_from(LABEL_KEYS), st.sampled_from(["Exists", "DoesNotExist"])),
)  # fmt: skip
selectors = st.one_of(st.none(), st.lists(requirements, max_size=3).map(lambda rs: LabelSelector(tuple(rs))))
DELETED = "deleted"
puts = st.lists(st.tuples(st.sampled_from(["ml", "web"]), st.sampled_from(["p1", "p2", "p3", "p4"]),
                          st.one_of(st.just(DELETED), selectors)), max_size=12)  # fmt: skip
label_sets = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES))


@given(puts, st.lists(label_sets, min_size=1, max_size=5))
def test_the_budget_index_finds_exactly_the_budgets_the_eviction_api_checks(
    changes: list[tuple[str, str, LabelSelector | str | None]], pods_labels: list[dict[str, str]]
) -> None:
    index, current = BudgetIndex(), {}
    for namespace, name, selector in changes:
        record = None if selector == DELETED else dataclasses.replace(budget(name, selector), namespace=namespace)  # type: ignore[arg-type]
        index.put(namespace, f"{namespace}/{name}", record)
        current[f"{namespace}/{name}"] = record
    for namespace in ("ml", "web", "other"):
        everything = [r for key, r in current.items() if r is not None and key.startswith(f"{namespace}/")]
        for labels in pods_labels:
            assert index.for_pod(namespace, labels) == budgets_for(labels, everything)
    # Everything removed again: nothing is left filed.
    for key in current:
        index.put(key.partition("/")[0], key, None)
    assert index._filed == {} and index._budgets == {}
