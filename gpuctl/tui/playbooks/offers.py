"""Which playbooks apply to what is selected in `gpuctl top`, with their parameters filled in.

Pure: a `Selection` (pods, nodes, pools, namespaces, read from the snapshot) and the
catalog give `Offer`s. A playbook applies by what its definition selects, so site
playbooks are offered like the built-in ones:

    idle_gpu_pods (reclaim-idle-gpus)   idle pods, or a node, pool or namespace holding some
    node (relabel-mig)                  one MIG-capable node; its profiles are the MIG manager's
                                        default config names that fit the node's GPU model
    pool (scale-pool)                   a pool, or the pool of the selected nodes
    quota (adjust-quota)                a namespace, its current quota as the new value

Parameters are filled in only where the selection decides them; the rest keep the
playbook's defaults on the plan screen. Marked pods are offered to reclaim-idle-gpus by
name (`pods`): its plan takes exactly those, or fewer with why; a site playbook without
a pod_list parameter is narrowed by namespace, node and max_pods instead, and the plan
screen says when its plan differs from the marks. A playbook that applies but cannot act on this
selection (no idle pod among those marked) is offered with `unavailable` saying why.
Whether the user may run it is asked of the engine (desk.py), not decided here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpuctl.migparted import gpu_model
from gpuctl.model import GpuPod, NamespaceUsage, Node
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.spec import DurationParam, IntParam, Playbook, PodListParam, Selector, spell_duration


@dataclass(frozen=True)
class Selection:
    """What the user marked (or the row under the cursor), resolved to snapshot objects."""

    pods: tuple[GpuPod, ...] = ()
    nodes: tuple[Node, ...] = ()
    pools: tuple[str, ...] = ()
    namespaces: tuple[NamespaceUsage, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pods or self.nodes or self.pools or self.namespaces)

    def describe(self) -> str:
        parts = [
            _count(len(self.pods), "pod"),
            _count(len(self.nodes), "node"),
            _count(len(self.pools), "pool"),
            _count(len(self.namespaces), "namespace"),
        ]
        return ", ".join(p for p in parts if p) or "nothing"


@dataclass(frozen=True)
class Offer:
    """One playbook for this selection: what it would act on, and its parameters as text."""

    playbook: str
    title: str  # one line: "reclaim 3 idle pods in team-a"
    params: dict[str, str] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a parameter's values to pick from
    unavailable: str | None = None  # why this selection gives it nothing to do
    marked: tuple[str, ...] = ()  # narrowed, not named (a playbook without pods): the plan screen compares

    @property
    def scope_namespace(self) -> str | None:
        """The namespace the offer is confined to, when it is (for the access check): its namespace, or the
        one namespace of the pods it names."""
        if namespace := self.params.get("namespace"):
            return namespace
        spaces = {key.partition("/")[0] for key in self.params.get("pods", "").split(",") if key}
        return spaces.pop() if len(spaces) == 1 else None



def _count(n: int, word: str) -> str:
    return "" if n == 0 else f"{n} {word}{'s' if n != 1 else ''}"


def _one(values: Iterable[str | None]) -> str | None:
    """The value when every item shares it, else None."""
    found = set(values)
    return next(iter(found)) if len(found) == 1 else None


def mig_profiles(node: Node) -> tuple[str, ...]:
    """The default MIG manager config names that fit the node's GPU model (all-disabled first), or ()."""
    model = gpu_model(node.gpu_model or "")
    if model is None:
        return ()
    return ("all-disabled", "all-balanced", *(f"all-{name}" for name in model.profiles))


def _idle_for(playbook: Playbook, pods: Sequence[GpuPod]) -> str | None:
    """idle_for no longer than the shortest idle streak among `pods` (so they all qualify), within bounds."""
    param = playbook.parameters.get("idle_for")
    streaks = [p.idle_for_s for p in pods if p.idle_for_s is not None]
    if not isinstance(param, DurationParam) or not streaks:
        return None
    seconds = float(math.floor(min(streaks)))
    if param.min is not None:
        seconds = max(seconds, param.min)
    if param.max is not None:
        seconds = min(seconds, param.max)
    default = getattr(param, "default", None)
    if default is not None and seconds >= default:
        return None  # the default already takes them all
    return spell_duration(seconds)


def _declared(playbook: Playbook, values: Mapping[str, str | None]) -> dict[str, str]:
    """The values the playbook has parameters for."""
    return {k: v for k, v in values.items() if v is not None and k in playbook.parameters}


def _reclaim(playbook: Playbook, sel: Selection) -> Offer | None:
    if sel.pods:
        idle = [p for p in sel.pods if p.idle]
        if not idle:
            return Offer(playbook.name, f"reclaim idle GPUs ({_count(len(sel.pods), 'pod')} selected)",
                         unavailable=f"none of the {_count(len(sel.pods), 'selected pod')} is idle")  # fmt: skip
        return _reclaim_pods(playbook, sel.pods, idle)
    if len(sel.nodes) == 1:
        name = sel.nodes[0].name
        return Offer(playbook.name, f"reclaim idle GPUs on node {name}", _declared(playbook, {"node": name}))
    if len(sel.pools) == 1:
        return Offer(playbook.name, f"reclaim idle GPUs in pool {sel.pools[0]}", _declared(playbook, {"pool": sel.pools[0]}))
    if len(sel.namespaces) == 1:
        name = sel.namespaces[0].name
        return Offer(playbook.name, f"reclaim idle GPUs in namespace {name}", _declared(playbook, {"namespace": name}))
    return None


def _reclaim_pods(playbook: Playbook, marked: Sequence[GpuPod], idle: Sequence[GpuPod]) -> Offer:
    """Exactly the marked pods, by name (`pods`): the plan takes none other and says why for each it leaves out
    (a marked busy pod included); idle_for, max_pods and max_gpus are widened, within bounds, to let the idle ones in."""
    param = playbook.parameters.get("pods")
    if not isinstance(param, PodListParam):
        return _reclaim_narrowed(playbook, idle)
    if len(marked) > param.max_items:
        return Offer(playbook.name, f"reclaim the {len(marked)} marked pods",
                     unavailable=f"{playbook.name} takes at most {param.max_items} pods by name: mark fewer")  # fmt: skip
    namespace, node = _one(p.namespace for p in idle), _one(p.node for p in idle)
    where = (f" in {namespace}" if namespace else "") + (f" on {node}" if node else "")
    of = f" (of {len(marked)} marked)" if len(marked) > len(idle) else ""
    values = {
        "pods": ",".join(p.key for p in marked),
        "max_pods": _at_least(playbook, "max_pods", len(idle), always=True),
        "max_gpus": _at_least(playbook, "max_gpus", sum(p.gpus + sum(p.mig.values()) for p in idle)),
        "idle_for": _idle_for(playbook, idle),
    }
    return Offer(playbook.name, f"reclaim {_count(len(idle), 'idle pod')}{where}{of}", _declared(playbook, values))


def _reclaim_narrowed(playbook: Playbook, idle: Sequence[GpuPod]) -> Offer:
    """For a site playbook that selects idle pods but cannot name them (no pod_list parameter): narrowed by
    namespace, node and max_pods as far as the marks allow; `marked` lets the plan screen say when it differs."""
    namespace, node = _one(p.namespace for p in idle), _one(p.node for p in idle)
    where = (f" in {namespace}" if namespace else "") + (f" on {node}" if node else "")
    values = {"namespace": namespace, "node": node, "max_pods": _at_least(playbook, "max_pods", len(idle), always=True),
              "idle_for": _idle_for(playbook, idle)}  # fmt: skip
    title = f"reclaim {_count(len(idle), 'idle pod')}{where}" if where else f"reclaim up to {_count(len(idle), 'idle pod')}"
    return Offer(playbook.name, title, _declared(playbook, values), marked=tuple(p.key for p in idle))


def _at_least(playbook: Playbook, name: str, wanted: int, *, always: bool = False) -> str | None:
    """An int parameter raised to `wanted` (within its max) where its default is lower; `always`: set it anyway."""
    param = playbook.parameters.get(name)
    if not isinstance(param, IntParam):
        return None
    if not always and param.default is not None and wanted <= param.default:
        return None
    return str(wanted if param.max is None else min(wanted, param.max))


def _relabel(playbook: Playbook, sel: Selection) -> list[Offer]:
    offers = []
    for node in sel.nodes:
        profiles = mig_profiles(node) if node.mig_capable else ()
        title = f"repartition MIG on node {node.name}"
        if not profiles:
            why = "its GPUs are not MIG-capable" if not node.mig_capable else f"gpuctl knows no MIG profiles for {node.gpu_model}"
            offers.append(Offer(playbook.name, title, unavailable=why))
            continue
        current = node.mig_config if node.mig_config in profiles else None
        values = {"node": node.name, "profile": next((p for p in profiles if p != current), profiles[0])}
        offers.append(Offer(playbook.name, title + (f" (now {node.mig_config})" if node.mig_config else ""),
                            _declared(playbook, values), {"profile": profiles}))  # fmt: skip
    return offers


def _scale(playbook: Playbook, sel: Selection) -> list[Offer]:
    pools = list(dict.fromkeys([*sel.pools, *(n.pool for n in sel.nodes)]))
    return [Offer(playbook.name, f"resize pool {pool}", _declared(playbook, {"pool": pool})) for pool in pools if pool]


def _quota(playbook: Playbook, sel: Selection) -> list[Offer]:
    offers = []
    for ns in sel.namespaces:
        quota = None if ns.gpu_quota_hard is None else str(int(ns.gpu_quota_hard))
        now = "no GPU quota now" if quota is None else f"now {quota}, {ns.gpu_quota_used:g} used"
        offers.append(Offer(playbook.name, f"set the GPU quota of {ns.name} ({now})",
                            _declared(playbook, {"namespace": ns.name, "quota": quota})))  # fmt: skip
    return offers


def offers_for(selection: Selection, catalog: Catalog) -> list[Offer]:
    """Every playbook of the catalog that applies to the selection, in catalog order."""
    out: list[Offer] = []
    for playbook in catalog:
        select = playbook.target.select
        if select is Selector.idle_gpu_pods:
            if (offer := _reclaim(playbook, selection)) is not None:
                out.append(offer)
        elif select is Selector.node:
            out += _relabel(playbook, selection)
        elif select is Selector.pool:
            out += _scale(playbook, selection)
        elif select is Selector.quota:
            out += _quota(playbook, selection)
    return out
