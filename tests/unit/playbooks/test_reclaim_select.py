"""reclaim-idle-gpus' selection on hand-built Snapshots: every guardrail, reason, cap and the order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpuctl.model import Owner
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.reclaim_select import Limits, Selection, select_idle_pods, spare_reasons
from gpuctl.playbooks.spec import Guardrails, OptOut, Protected
from tests.snapshots import HOUR, T0, World

IDLE_FOR = 2 * HOUR


@pytest.fixture
def guardrails(catalog: Catalog) -> Guardrails:
    return catalog.get("reclaim-idle-gpus").guardrails


def select(world: World, guardrails: Guardrails, *, max_pods: int = 10, max_gpus: int = 32, idle_for: float = IDLE_FOR,
           metrics_stale: bool = False, shared_nodes: tuple[str, ...] = (), **scope: str) -> Selection:  # fmt: skip
    limits = Limits.of(guardrails, idle_for_s=idle_for, max_pods=max_pods, max_gpus=max_gpus)
    return select_idle_pods(world.snapshot(metrics_stale=metrics_stale, shared_nodes=shared_nodes), guardrails, limits, **scope)


def chosen(selection: Selection) -> list[str]:
    return [c.pod.name for c in selection.chosen]


def reasons(selection: Selection) -> dict[str, str]:
    return {c.pod.name: c.reason for c in selection.left_out}


def test_longest_idle_first_then_more_gpus_then_name(guardrails: Guardrails) -> None:
    world = World()
    world.pod("short", idle_for=2.5 * HOUR)
    world.pod("long", idle_for=6 * HOUR)
    world.pod("tie-small", idle_for=4 * HOUR, node="node-2")
    world.pod("tie-big", gpus=4, idle_for=4 * HOUR, node="node-3")
    world.pod("tie-a", idle_for=4 * HOUR, node="node-4")
    selection = select(world, guardrails)
    assert chosen(selection) == ["long", "tie-big", "tie-a", "tie-small", "short"]
    assert [c.idle_s for c in selection.chosen] == [6 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR, 2.5 * HOUR]
    assert selection.left_out == () and selection.blocked == ()


def test_every_requested_gpu_must_be_measured_fresh_and_idle(guardrails: Guardrails) -> None:
    world = World()
    world.pod("all-idle", gpus=4)
    world.pod("one-quiet", gpus=4, states=("idle", "idle", "quiet", "idle"))
    world.pod("one-stale", gpus=2, states=("idle", "stale"))
    world.pod("half-measured", gpus=2, measured=1)
    world.pod("row-missing", gpus=1, extra_keys=("node-9/0",))  # attributed a key the metrics have no row for
    world.pod("one-busy", gpus=2, states=("idle", "busy"))  # busy: not a candidate, not listed
    world.pod("quiet-only", gpus=1, states=("quiet",))  # nothing idle: not listed
    selection = select(world, guardrails)
    assert chosen(selection) == ["all-idle"]
    why = reasons(selection)
    assert set(why) == {"one-quiet", "one-stale", "half-measured", "row-missing"}
    assert "has not been idle for the whole idle window (10m) yet" in why["one-quiet"]
    assert why["one-stale"] == "metrics for GPU node-1/9 are stale"
    assert why["half-measured"] == "only 1 of its 2 GPUs are measured"
    assert why["row-missing"] == "GPU node-9/0 is not in the metrics"


def test_stale_metrics_block_the_plan(guardrails: Guardrails) -> None:
    world = World()
    world.pod("idle", gpus=2)
    selection = select(world, guardrails, metrics_stale=True)
    assert selection.chosen == () and selection.left_out == ()
    assert selection.blocked == (
        "GPU metrics are stale (Prometheus unreachable): an unmeasured GPU is not an idle one; try again later",
    )


def test_idle_for_and_pod_age(guardrails: Guardrails) -> None:
    world = World()
    world.pod("brief", idle_for=1 * HOUR)
    world.pod("young", idle_for=3 * HOUR, age=1.5 * HOUR)  # idle longer than it has lived? the clock says so; too young
    world.pod("unknown-age", created=None)
    world.pod("old-enough", age=2 * HOUR)
    selection = select(world, guardrails)
    assert chosen(selection) == ["old-enough"]
    assert reasons(selection) == {
        "brief": "idle 1h00m, under idle_for=2h00m",
        "young": "1h30m old, younger than 2h00m",
        "unknown-age": "its age is unknown",
    }


def test_min_pod_age_guardrail_binds_when_idle_for_is_shorter(guardrails: Guardrails) -> None:
    world = World()
    world.pod("twenty-minutes", idle_for=HOUR, age=20 * 60)
    world.pod("forty-minutes", idle_for=HOUR, age=40 * 60)
    selection = select(world, guardrails, idle_for=10 * 60)  # below min_pod_age (30m): the guardrail wins
    assert chosen(selection) == ["forty-minutes"]
    assert reasons(selection) == {"twenty-minutes": "20m old, younger than 30m"}


def test_protected_namespaces_priority_classes_and_opt_out_label(guardrails: Guardrails) -> None:
    world = World()
    world.pod("operator", namespace="gpu-operator")
    world.pod("dns", namespace="kube-system")
    world.pod("critical", priority_class="system-node-critical")
    world.pod("keep-me", labels={"gpuctl.io/reclaim": "never"})
    world.pod("other-value", labels={"gpuctl.io/reclaim": "later"})  # only the declared value opts out
    world.pod("fine", priority_class="batch-low")
    selection = select(world, guardrails)
    assert sorted(chosen(selection)) == ["fine", "other-value"]
    assert reasons(selection) == {
        "operator": "namespace gpu-operator is protected",
        "dns": "namespace kube-system is protected",
        "critical": "priority class system-node-critical is protected",
        "keep-me": "opted out (label gpuctl.io/reclaim=never)",
    }


def test_protected_globs_and_refuse(guardrails: Guardrails) -> None:
    protected = Protected(namespaces=("team-*-prod",), priority_classes=("*-critical",), on_match="refuse",
                          opt_out=(OptOut(label="keep", value="yes"), OptOut(object="node", label="keep", value="yes")))  # fmt: skip
    strict = guardrails.model_copy(update={"protected": protected})
    world = World()
    world.pod("prod", namespace="team-a-prod")
    world.pod("mine")
    selection = select(world, strict)
    assert chosen(selection) == ["mine"]
    assert selection.blocked == ("team-a-prod/prod: namespace team-a-prod is protected; this playbook refuses to run while it is in scope",)


def test_pods_that_come_back_and_pods_without_uid(guardrails: Guardrails) -> None:
    world = World()
    world.pod("ds", owners=(Owner(kind="DaemonSet", name="agent"),))
    world.pod("static", owners=(Owner(kind="Node", name="node-1"),))
    world.pod("bare", owners=())
    world.pod("demo", uid=None)
    selection = select(world, guardrails)
    assert chosen(selection) == ["bare"]  # no controller is allowed (the plan warns it is not recreated)
    assert reasons(selection) == {
        "ds": "a DaemonSet pod comes straight back on its node",
        "static": "a static pod: its kubelet runs it",
        "demo": "no uid (not read from the Kubernetes API): it cannot be evicted safely",
    }


def test_not_running_and_several_budgets(guardrails: Guardrails) -> None:
    world = World()
    world.pod("finished", phase="Failed")
    world.pod("double", pdbs=("a", "b"))
    world.pod("single", pdbs=("a",), disruption_allowed=False)  # one refusing budget: chosen, the plan warns
    selection = select(world, guardrails)
    assert chosen(selection) == ["single"]
    assert reasons(selection) == {
        "finished": "phase Failed",
        "double": "under 2 PodDisruptionBudgets (team-a/a, team-a/b): the Eviction API refuses such pods",
    }


def test_time_sliced_gpus_are_never_reclaimed(guardrails: Guardrails) -> None:
    world = World()
    world.pod("slices", gpus=0, gpu_slices=2, measured=1, states=("idle",))
    world.pod("on-shared-node", node="shared-1", gpus=2, measured=1)
    world.pod("whole", node="node-2")
    selection = select(world, guardrails, shared_nodes=("shared-1",))
    assert chosen(selection) == ["whole"]
    assert reasons(selection) == {
        "slices": "holds time-sliced GPUs: a shared GPU's metrics cannot say which pod uses it",
        "on-shared-node": "holds time-sliced GPUs: a shared GPU's metrics cannot say which pod uses it",
    }


def test_mig_instances_count_as_devices(guardrails: Guardrails) -> None:
    world = World()
    world.pod("mig", gpus=0, mig={"nvidia.com/mig-1g.10gb": 3})
    world.pod("mig-short", gpus=0, mig={"nvidia.com/mig-1g.10gb": 2}, measured=1)
    selection = select(world, guardrails)
    assert chosen(selection) == ["mig"]
    assert reasons(selection) == {"mig-short": "only 1 of its 2 GPUs are measured"}


def test_caps_max_pods_and_max_gpus(guardrails: Guardrails) -> None:
    world = World()
    world.pod("a", gpus=4, idle_for=9 * HOUR)
    world.pod("b", gpus=8, idle_for=8 * HOUR, node="node-2")  # too big for what is left: passed over
    world.pod("c", gpus=2, idle_for=7 * HOUR, node="node-3")
    world.pod("d", gpus=1, idle_for=6 * HOUR, node="node-4")
    world.pod("e", gpus=1, idle_for=5 * HOUR, node="node-5")
    selection = select(world, guardrails, max_pods=3, max_gpus=8)
    assert chosen(selection) == ["a", "c", "d"]
    assert reasons(selection) == {
        "b": "its 8 GPUs would pass max_gpus=8 for one run (4 chosen before it)",
        "e": "over max_pods=3 for one run",
    }
    assert [c.pod.name for c in selection.left_out] == ["b", "e"]  # longest idle first


def test_parameters_never_lift_the_guardrails(guardrails: Guardrails) -> None:
    limits = Limits.of(guardrails, idle_for_s=10 * 60, max_pods=500, max_gpus=1000)
    assert (limits.max_pods, limits.max_gpus, limits.min_age_s, limits.idle_for_s) == (50, 128, 1800, 600)


def test_scope_by_namespace_pool_and_node(guardrails: Guardrails) -> None:
    world = World()
    world.pod("a1", namespace="team-a", node="n1", pool="a100")
    world.pod("a2", namespace="team-a", node="n2", pool="h100")
    world.pod("b1", namespace="team-b", node="n3", pool="a100", idle_for=HOUR)  # would be left out, but out of scope
    assert chosen(select(world, guardrails, namespace="team-a")) == ["a1", "a2"]
    in_pool = select(world, guardrails, pool="a100")
    assert chosen(in_pool) == ["a1"] and reasons(in_pool) == {"b1": "idle 1h00m, under idle_for=2h00m"}
    on_node = select(world, guardrails, node="n2")
    assert chosen(on_node) == ["a2"] and on_node.left_out == ()


def test_left_out_longest_idle_first(guardrails: Guardrails) -> None:
    world = World()
    world.pod("z-young", idle_for=5 * HOUR, age=HOUR)
    world.pod("a-brief", idle_for=HOUR)
    world.pod("m-quiet", states=("quiet",), measured=1, gpus=2, extra_keys=())
    world.pod("m-idle-one", gpus=2, states=("idle", "quiet"))
    selection = select(world, guardrails)
    assert [c.pod.name for c in selection.left_out] == ["z-young", "a-brief", "m-idle-one"]


# -- spare_reasons: the re-check before evicting ------------------------------------------


def test_spare_reasons(guardrails: Guardrails) -> None:
    planned_at = T0 - timedelta(minutes=30)
    world = World()
    still = world.pod("still", idle_for=3 * HOUR)
    busy = world.pod("busy-now", states=("busy",))
    burst = world.pod("burst", idle_for=20 * 60)  # idle again, but only since 20 minutes: it worked during the grace
    replaced = world.pod("replaced")
    stale = world.pod("stale", gpus=2, states=("idle", "stale"))
    pods = {p.key: p.uid for p in (still, busy, burst, stale)}
    pods[replaced.key] = "another-uid"
    pods["team-a/gone"] = "x"
    spare = spare_reasons(world.snapshot(), pods, planned_at)
    assert spare == {
        still.key: None,
        busy.key: "busy again or no longer measured idle: GPU node-1/1 is busy (87%)",
        burst.key: "busy again since the plan: its GPUs have been idle only 20m",
        replaced.key: "replaced by another pod of that name since the plan",
        stale.key: "busy again or no longer measured idle: metrics for GPU node-1/5 are stale",
        "team-a/gone": "no longer in the live picture (gone, or holding no GPU): not evicted blindly",
    }


def test_spare_everything_when_the_picture_cannot_tell() -> None:
    world = World()
    pod = world.pod("idle")
    assert spare_reasons(world.snapshot(metrics_stale=True), {pod.key: pod.uid}, T0 - timedelta(hours=1)) == {
        pod.key: "GPU metrics are stale (Prometheus unreachable): cannot tell whether it is still idle"
    }
    old = spare_reasons(world.snapshot(), {pod.key: pod.uid}, T0 + timedelta(minutes=1))
    assert old == {pod.key: "the live picture (12:00:00 UTC) is older than the plan: cannot tell whether it is still idle"}


def named(world: World, guardrails: Guardrails, *pods: str, **kwargs: object) -> Selection:
    limits = Limits.of(guardrails, idle_for_s=IDLE_FOR, max_pods=int(kwargs.pop("max_pods", 10)), max_gpus=32)  # type: ignore[call-overload]
    return select_idle_pods(world.snapshot(), guardrails, limits, pods=pods, **kwargs)  # type: ignore[arg-type]


def test_named_pods_are_the_only_ones_chosen(guardrails: Guardrails) -> None:
    world = World()
    world.pod("a", idle_for=3 * HOUR)
    world.pod("b", idle_for=6 * HOUR, node="node-2")
    world.pod("other", idle_for=9 * HOUR, node="node-3")  # idlest of all, not named: never taken
    selection = named(world, guardrails, "team-a/a", "team-a/b")
    assert chosen(selection) == ["b", "a"]  # the usual order among the named
    assert selection.left_out == () and selection.unknown == ()


def test_every_named_pod_is_accounted_for_with_the_engines_rules(guardrails: Guardrails) -> None:
    world = World()
    world.pod("ok")
    world.pod("busy", node="node-2", states=("busy",))  # not idle-looking: still answered, since it was asked for
    world.pod("unmeasured", node="node-3", measured=0)  # an unmeasured GPU is not an idle one
    world.pod("brief", node="node-4", idle_for=HOUR)
    world.pod("young", node="node-5", age=20 * 60)
    world.pod("operator", namespace="gpu-operator", node="node-6")
    world.pod("elsewhere", namespace="team-b", node="node-7")
    keys = ("team-a/ok", "team-a/busy", "team-a/unmeasured", "team-a/brief", "team-a/young", "gpu-operator/operator",
            "team-b/elsewhere", "team-a/no-such-pod")  # fmt: skip
    selection = named(world, guardrails, *keys, namespace="team-a")
    assert chosen(selection) == ["ok"]
    why = reasons(selection)
    assert why["busy"] == "GPU node-2/0 is busy (87%)"
    assert why["unmeasured"] == "none of its 1 GPUs is measured"
    assert why["brief"] == "idle 1h00m, under idle_for=2h00m"
    assert why["young"] == "20m old, younger than 2h00m"
    assert why["operator"] == "outside namespace=team-a"  # the narrowing still holds, and says so
    assert why["elsewhere"] == "outside namespace=team-a"
    assert selection.unknown == ("team-a/no-such-pod",)  # not a GPU pod in the picture: the planner asks the API server
    unscoped = named(world, guardrails, "gpu-operator/operator")
    assert reasons(unscoped) == {"operator": "namespace gpu-operator is protected"}


def test_named_pods_keep_the_caps_and_stale_metrics_block(guardrails: Guardrails) -> None:
    world = World()
    for i in range(3):
        world.pod(f"p{i}", node=f"node-{i}", idle_for=(3 + i) * HOUR)
    selection = named(world, guardrails, "team-a/p0", "team-a/p1", "team-a/p2", max_pods=2)
    assert chosen(selection) == ["p2", "p1"]
    assert reasons(selection) == {"p0": "over max_pods=2 for one run"}
    limits = Limits.of(guardrails, idle_for_s=IDLE_FOR, max_pods=10, max_gpus=32)
    stale = select_idle_pods(world.snapshot(metrics_stale=True), guardrails, limits, pods=("team-a/p0",))
    assert stale.chosen == () and stale.unknown == () and stale.blocked
