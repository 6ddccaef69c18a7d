"""Which playbooks `a` offers for a selection, and the parameters it fills in (gpuctl.tui.playbooks.offers)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

from gpuctl.identity import Identity, Requester
from gpuctl.model import GpuPod, NamespaceUsage, Node
from gpuctl.playbooks.loader import Catalog, load_catalog, parse_playbook
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Plan, Step, TargetRef
from gpuctl.tui.playbooks.offers import Offer, Selection, mig_profiles, offers_for
from gpuctl.tui.playbooks.plan_screen import marked_difference

CATALOG = load_catalog()
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def pod(name: str, namespace: str = "team-a", node: str = "h100-0", *, idle_h: float | None = 3.0) -> GpuPod:
    return GpuPod(namespace=namespace, name=name, node=node, phase="Running", gpus=1, created=T0,
                  idle=idle_h is not None, idle_for_s=None if idle_h is None else idle_h * 3600)  # fmt: skip


def node(name: str = "h100-0", *, model: str = "NVIDIA-H100-80GB-HBM3", mig: bool = True, config: str | None = None) -> Node:
    return Node(name=name, pool="h100", gpu_model=model, mig_capable=mig, mig_config=config)


def by_name(offers: list[Offer]) -> dict[str, Offer]:
    return {o.playbook: o for o in offers}


def valid(offer: Offer) -> None:
    """What the offer fills in passes the playbook's own validation (the engine's first check)."""
    validate_params(CATALOG.get(offer.playbook), dict(offer.params))


def test_marked_pods_offer_reclaim_of_exactly_those_by_name() -> None:
    offers = offers_for(Selection(pods=(pod("a"), pod("b", idle_h=2.5), pod("busy", idle_h=None))), CATALOG)
    assert list(by_name(offers)) == ["reclaim-idle-gpus"]
    reclaim = offers[0]
    assert reclaim.unavailable is None
    # idle_for no longer than the shortest streak (2h30m), so both idle pods qualify; the busy one is named too,
    # so the plan says why it is left out; max_pods counts the idle ones
    assert reclaim.params == {"pods": "team-a/a,team-a/b,team-a/busy", "max_pods": "2"}
    assert reclaim.title == "reclaim 2 idle pods in team-a on h100-0 (of 3 marked)"
    valid(reclaim)


def test_idle_for_shortens_to_the_youngest_streak_within_the_bounds() -> None:
    reclaim = offers_for(Selection(pods=(pod("a", idle_h=0.75), pod("b", namespace="team-b", node="h100-1"))), CATALOG)[0]
    assert reclaim.params == {"pods": "team-a/a,team-b/b", "max_pods": "2", "idle_for": "45m"}
    valid(reclaim)
    reclaim = offers_for(Selection(pods=(pod("a", idle_h=0.1),)), CATALOG)[0]
    assert reclaim.params["idle_for"] == "30m"  # the playbook's minimum


def test_no_idle_pod_is_offered_but_unavailable_with_the_reason() -> None:
    reclaim = offers_for(Selection(pods=(pod("busy", idle_h=None),)), CATALOG)[0]
    assert reclaim.unavailable == "none of the 1 selected pod is idle"


def test_a_mig_node_offers_relabel_with_its_profiles_reclaim_on_it_and_its_pool() -> None:
    offers = by_name(offers_for(Selection(nodes=(node(config="all-disabled"),)), CATALOG))
    assert set(offers) == {"reclaim-idle-gpus", "relabel-mig", "scale-pool"}
    relabel = offers["relabel-mig"]
    assert relabel.choices["profile"] == ("all-disabled", "all-balanced", "all-1g.10gb", "all-1g.20gb", "all-2g.20gb",
                                         "all-3g.40gb", "all-4g.40gb", "all-7g.80gb")  # fmt: skip
    assert relabel.params == {"node": "h100-0", "profile": "all-balanced"}  # not the profile it has
    assert offers["scale-pool"].params == {"pool": "h100"}
    assert offers["reclaim-idle-gpus"].params == {"node": "h100-0"}
    for offer in (relabel, offers["reclaim-idle-gpus"]):
        valid(offer)


def test_a_node_without_mig_gets_relabel_unavailable() -> None:
    relabel = by_name(offers_for(Selection(nodes=(node(model="NVIDIA-L4", mig=False),)), CATALOG))["relabel-mig"]
    assert relabel.unavailable == "its GPUs are not MIG-capable"
    assert mig_profiles(node(model="NVIDIA-L4", mig=False)) == ()


def test_a_namespace_offers_its_quota_at_the_current_value_and_reclaim_in_it() -> None:
    usage = NamespaceUsage(name="team-a", gpu_quota_hard=8, gpu_quota_used=6)
    offers = by_name(offers_for(Selection(namespaces=(usage,)), CATALOG))
    assert offers["adjust-quota"].params == {"namespace": "team-a", "quota": "8"}
    assert offers["adjust-quota"].title == "set the GPU quota of team-a (now 8, 6 used)"
    assert offers["reclaim-idle-gpus"].params == {"namespace": "team-a"}
    valid(offers["adjust-quota"])


def test_a_pool_offers_scale_pool_and_nothing_selected_offers_nothing() -> None:
    assert [o.playbook for o in offers_for(Selection(pools=("a100",)), CATALOG)] == ["reclaim-idle-gpus", "scale-pool"]
    assert offers_for(Selection(), CATALOG) == []
    assert not Selection()
    assert Selection(pods=(pod("a"),), pools=("x", "y")).describe() == "1 pod, 2 pools"


def test_marked_pods_beyond_the_caps_widen_them_or_are_refused_with_why() -> None:
    many = tuple(pod(f"p{i}", node=f"h100-{i}") for i in range(12))
    reclaim = offers_for(Selection(pods=many), CATALOG)[0]
    assert reclaim.params["max_pods"] == "12" and len(reclaim.params["pods"].split(",")) == 12
    assert reclaim.title == "reclaim 12 idle pods in team-a"
    valid(reclaim)
    big = tuple(pod(f"b{i}", node=f"h100-{i}").model_copy(update={"gpus": 8}) for i in range(5))
    assert offers_for(Selection(pods=big), CATALOG)[0].params["max_gpus"] == "40"  # the default 32 would leave one out
    too_many = tuple(pod(f"p{i}") for i in range(51))
    assert offers_for(Selection(pods=too_many), CATALOG)[0].unavailable == "reclaim-idle-gpus takes at most 50 pods by name: mark fewer"


# A site's reclaim written before `pods` existed: it selects idle pods but cannot name them.
_SHIPPED = (files("gpuctl.playbooks") / "builtin" / "reclaim-idle-gpus.yaml").read_text(encoding="utf-8")
_WITHOUT_PODS = _SHIPPED[: _SHIPPED.index("  pods:\n")] + _SHIPPED[_SHIPPED.index("\ntarget:") + 1 :]
NO_PODS = Catalog(playbooks={"reclaim-idle-gpus": parse_playbook(_WITHOUT_PODS.replace(", pods]", "]"), "reclaim-idle-gpus.yaml")},
                  sources={})  # fmt: skip


def test_a_site_playbook_that_cannot_name_pods_is_narrowed_and_the_plan_screen_says_when_it_differs() -> None:
    offer = offers_for(Selection(pods=(pod("a", idle_h=3), pod("b", namespace="team-b", node="h100-1"))), NO_PODS)[0]
    assert offer.title == "reclaim up to 2 idle pods"  # two namespaces: the playbook picks within its bounds
    assert offer.marked == ("team-a/a", "team-b/b")
    requester = Requester(identity=Identity(user="u"), via="tui")

    def plan_of(*keys: str) -> Plan:
        steps = tuple(Step(action="evict_pods", target=TargetRef(kind="Pod", namespace=k.split("/")[0], name=k.split("/")[1]))
                      for k in keys)  # fmt: skip
        return Plan(playbook="reclaim-idle-gpus", requester=requester, created_at=T0, steps=steps)

    assert marked_difference(plan_of("team-a/a", "team-b/b"), offer.marked) is None
    said = marked_difference(plan_of("team-a/a", "team-c/c"), offer.marked)
    assert said == ("the plan also takes pods you did not mark: team-c/c; it leaves out marked pods: team-b/b "
                    "(see why under 'left out') — narrow it with namespace, node or max_pods")  # fmt: skip
    assert marked_difference(plan_of("team-c/c"), ()) is None  # not offered for marked pods: nothing to compare


def test_an_offer_naming_pods_of_one_namespace_is_confined_to_it() -> None:
    one = offers_for(Selection(pods=(pod("a"), pod("b"))), CATALOG)[0]
    assert one.scope_namespace == "team-a"  # the access pre-check asks the cluster there
    two = offers_for(Selection(pods=(pod("a"), pod("b", namespace="team-b"))), CATALOG)[0]
    assert two.scope_namespace is None and two.marked == ()
