"""What relabel-mig decides about one node: pure, no I/O.

- `NodeFacts.read(obj)`: the parts of a Node object that matter (identity,
  MIG labels, strategy, GPU product, cordon, GPU resources).
- `physical_gpus`: how many GPUs the node has. No label says so under the
  single strategy with MIG on (`nvidia.com/gpu.count` then counts instances),
  so it is inferred from what the device plugin advertises for the applied
  config, falling back to `nvidia.com/gpu.count`.
- `relabel_target`: the layout and advertised resources a profile gives the
  node, or why it cannot be applied there (no entry for the GPU model, does
  not fit, nothing the single strategy can advertise).
- `judge`: while the MIG manager works, whether its answer is in.
- `stuck_report`: what to tell a person when it is not, and what to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from gpuctl.errors import MigConfigInvalid
from gpuctl.migparted import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    MIG_CONFIG_LABEL,
    MIG_RESOURCE_PREFIX,
    MIG_STATE_LABEL,
    MIG_STRATEGY_LABEL,
    GpuLayout,
    MigConfigEntry,
    MigGpuModel,
    MigPartedConfig,
    MigStrategy,
    advertised_resources,
    apply_config,
    gpu_model,
    single_strategy_profile,
)
from gpuctl.playbooks.plan import Change, Step
from gpuctl.sources.kube.trim import parse_quantity

MIG_CAPABLE_LABEL = "nvidia.com/mig.capable"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
# The GPU operator runs the MIG manager DaemonSet only on nodes carrying this label (state-mig-manager).
MIG_MANAGER_DEPLOY_LABEL = "nvidia.com/gpu.deploy.mig-manager"
DEFAULT_STRATEGY: MigStrategy = "single"  # the GPU operator's default mig.strategy
_MAX_GPUS_PER_NODE = 16
_RESOURCE_FIELD = "status.allocatable[{}]"
LABEL_FIELD = f"labels[{MIG_CONFIG_LABEL}]"
LAYOUT_FIELD = "gpus[MIG devices]"  # not a field of the Node: what the MIG manager does to its GPUs

Verdict = Literal["success", "failed", "changed"]


def gpu_resources(resources: Mapping[str, Any] | None) -> dict[str, int]:
    """`nvidia.com/gpu` and `nvidia.com/mig-*` counts; zeros dropped, so absent and 0 compare equal."""
    out: dict[str, int] = {}
    for name, value in (resources or {}).items():
        if name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX):
            count = int(parse_quantity(value))
            if count:
                out[name] = count
    return out


def describe_resources(resources: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={count}" for name, count in sorted(resources.items())) or "no GPUs"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    unschedulable: bool
    capacity: Mapping[str, int]
    allocatable: Mapping[str, int]

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> NodeFacts:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            labels=dict(meta.get("labels") or {}),
            unschedulable=bool(spec.get("unschedulable")),
            capacity=gpu_resources(status.get("capacity")),
            allocatable=gpu_resources(status.get("allocatable")),
        )

    @property
    def mig_config(self) -> str | None:
        return self.labels.get(MIG_CONFIG_LABEL) or None

    @property
    def mig_state(self) -> str | None:
        return self.labels.get(MIG_STATE_LABEL) or None

    @property
    def product(self) -> str:
        return self.labels.get(GPU_PRODUCT_LABEL, "")

    @property
    def strategy(self) -> MigStrategy | None:
        value = self.labels.get(MIG_STRATEGY_LABEL)
        return cast(MigStrategy, value) if value in ("none", "single", "mixed") else None


def not_relabelable(node: NodeFacts) -> str | None:
    """Why the MIG manager cannot act on this node at all, or None."""
    if node.labels.get(MIG_CAPABLE_LABEL) == "false":
        return f"node {node.name}'s GPUs are not MIG-capable ({MIG_CAPABLE_LABEL}=false)"
    if node.labels.get(MIG_MANAGER_DEPLOY_LABEL) != "true":
        return (
            f"no MIG manager runs on node {node.name} ({MIG_MANAGER_DEPLOY_LABEL} is not 'true'): "
            "enable the GPU operator's migManager for it"
        )
    if gpu_model(node.product) is None:
        return f"gpuctl does not know the MIG profiles of {node.product or 'an unlabelled GPU'} (node {node.name}'s {GPU_PRODUCT_LABEL})"
    return None


def _advertises(
    entries: tuple[MigConfigEntry, ...], model: MigGpuModel, gpus: int, strategy: MigStrategy
) -> dict[str, int] | None:
    try:
        layout = apply_config(entries, model, (None,) * gpus)
    except MigConfigInvalid:
        return None
    return {k: v for k, v in advertised_resources(layout, strategy).items() if v}


def physical_gpus(node: NodeFacts, config: MigPartedConfig, model: MigGpuModel, strategy: MigStrategy) -> int | None:
    """The GPU count for which a config would advertise exactly the node's capacity: the applied config
    first, any config next (when the unique count agrees), else `nvidia.com/gpu.count` where it counts GPUs."""
    applied = [node.mig_config] if node.mig_state == "success" and node.mig_config in config.mig_configs else []
    for names in (applied, list(config.mig_configs)):
        found = {
            gpus
            for name in names
            for gpus in range(1, _MAX_GPUS_PER_NODE + 1)
            if _advertises(config.mig_configs[str(name)], model, gpus, strategy) == dict(node.capacity)
        }
        if len(found) == 1:
            return found.pop()
    count = node.labels.get(GPU_COUNT_LABEL, "")
    counts_gpus = "-MIG-" not in node.product  # single strategy with MIG on renames the product and counts instances
    return int(count) if counts_gpus and count.isdigit() and int(count) > 0 else None


def describe_layout(layout: tuple[GpuLayout, ...]) -> str:
    """'8× 7×1g.10gb' or '2× 3g.40gb+1g.10gb, 6× MIG off': identical GPUs counted together, in order of appearance."""
    counts: dict[str, int] = {}
    for gpu in layout:
        text = (
            "MIG off" if gpu is None else "+".join(f"{n}×{p}" if n > 1 else p for p, n in sorted(gpu.items())) or "MIG on, empty"
        )
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(f"{count}× {text}" for text, count in counts.items())


@dataclass(frozen=True, slots=True)
class RelabelTarget:
    """What setting the profile does to the node, as far as gpuctl can compute it."""

    gpus: int
    strategy: MigStrategy
    current: tuple[GpuLayout, ...]  # as the applied config lays the GPUs out (all MIG off when unknown)
    layout: tuple[GpuLayout, ...]
    before: Mapping[str, int]  # allocatable GPU resources as read
    after: Mapping[str, int]  # what the device plugin will advertise

    def changes(self, old: str | None, new: str) -> tuple[Change, ...]:
        """The label change, the GPUs' MIG devices, then every GPU resource before → after (verify compares against `after`)."""
        keys = sorted(set(self.before) | set(self.after))
        resources = (
            Change(field=_RESOURCE_FIELD.format(k), before=self.before.get(k, 0), after=self.after.get(k, 0)) for k in keys
        )
        layouts = Change(field=LAYOUT_FIELD, before=describe_layout(self.current), after=describe_layout(self.layout))
        return (Change(field=LABEL_FIELD, before=old, after=new), layouts, *resources)


def relabel_target(
    node: NodeFacts, config: MigPartedConfig, source: str, profile: str, model: MigGpuModel, strategy: MigStrategy
) -> RelabelTarget | str:
    """The node after `profile` is applied, or why it cannot be (a sentence naming node, model and profile).

    `profile` must be in `config` (MigPartedConfig.select raises otherwise)."""
    entries = config.select(profile, source=source)
    gpus = physical_gpus(node, config, model, strategy)
    if gpus is None:
        return (
            f"cannot tell how many GPUs node {node.name} has (it advertises {describe_resources(node.capacity)}, "
            f"{GPU_COUNT_LABEL}={node.labels.get(GPU_COUNT_LABEL)!r}), so the result of {profile} cannot be checked"
        )
    if not any(entry.applies_to(i, model.device_id) for entry in entries for i in range(gpus)):
        return f"{profile} in {source} has no entry for node {node.name}'s GPUs ({model.product}, device id {model.device_id})"
    current: tuple[GpuLayout, ...] = (None,) * gpus
    if node.mig_state == "success" and node.mig_config in config.mig_configs:
        try:
            current = apply_config(config.mig_configs[str(node.mig_config)], model, current)
        except MigConfigInvalid:
            pass  # the node's own config no longer fits: the GPUs no entry of the new one touches are unknown anyway
    try:
        layout = apply_config(entries, model, current)
    except MigConfigInvalid as exc:
        return f"{profile} does not fit node {node.name}'s GPUs: {exc}"
    if strategy == "single" and any(gpu is not None for gpu in layout) and single_strategy_profile(layout) is None:
        return (
            f"under the single MIG strategy {profile} advertises no GPUs on node {node.name} (the device plugin needs every "
            "GPU MIG-enabled with one profile): use the mixed strategy or another profile"
        )
    after = {k: v for k, v in advertised_resources(layout, strategy).items() if v}
    return RelabelTarget(gpus=gpus, strategy=strategy, current=current, layout=layout, before=dict(node.allocatable), after=after)


# -- reading a planned label step back ----------------------------------------------


def label_change(step: Step) -> Change:
    return next(c for c in step.changes if c.field == LABEL_FIELD)


def reconfigures(step: Step) -> bool:
    """Whether the MIG manager must change the GPUs (go `pending`) rather than find the layout applied."""
    change = next((c for c in step.changes if c.field == LAYOUT_FIELD), None)
    return change is None or change.before != change.after


def expected_resources(step: Step) -> dict[str, int]:
    """The allocatable GPU resources the step's profile should leave (zeros dropped)."""
    prefix, suffix = _RESOURCE_FIELD.split("{}")
    return {c.field[len(prefix) : -len(suffix)]: int(c.after) for c in step.changes if c.field.startswith(prefix) and c.after}


def previous_resources(step: Step) -> dict[str, int]:
    prefix, suffix = _RESOURCE_FIELD.split("{}")
    return {c.field[len(prefix) : -len(suffix)]: int(c.before) for c in step.changes if c.field.startswith(prefix) and c.before}


# -- waiting for the MIG manager ----------------------------------------------------------


def judge(
    node: NodeFacts,
    *,
    profile: str,
    expected: Mapping[str, int],
    reconfigures: bool,
    start_state: str | None,
    seen: set[str | None],
) -> Verdict | None:
    """The MIG manager's answer for `profile`, or None while it is not in.

    `seen`: every state seen since the label was set, the current one included.
    success needs the expected resources and, when the GPUs must change and the
    state was already `success` (left by the previous config), a state other
    than success seen on the way: the resources alone may not differ (MIG off →
    7g.80gb under the single strategy advertises one nvidia.com/gpu per GPU
    both ways). `failed` counts once the state moved: one left from before is
    not an answer."""
    if node.mig_config != profile:
        return "changed"
    moved = start_state != "success" or bool(seen - {"success"}) or not reconfigures
    if node.mig_state == "success" and dict(node.allocatable) == dict(expected) and moved:
        return "success"
    if node.mig_state == "failed" and (start_state != "failed" or seen - {"failed"}):
        return "failed"
    return None


def what_to_check(namespace: str | None, node: str) -> str:
    where = f"-n {namespace} " if namespace else ""
    return (
        f"check the MIG manager's pod on {node} (`kubectl {where}get pods -l app=nvidia-mig-manager -o wide`, then its logs), "
        f"the node's {MIG_STATE_LABEL} and nvidia.com/gpu.deploy.* labels (paused-for-mig-change means the GPU operator's "
        "operand pods did not stop: NVIDIA/gpu-operator#2833), and the GPU operator's validator pod on the node "
        "(nvidia-operator-validator)"
    )


def stuck_report(node: NodeFacts, *, profile: str, expected: Mapping[str, int], waited: str, namespace: str | None) -> str:
    """Why the wait ended without an answer (`waited`: "after 15m"), and what a person should look at."""
    state = node.mig_state
    if state == "success" and dict(node.allocatable) == dict(expected):
        what = (
            f"the MIG manager left {MIG_STATE_LABEL} at success without reconfiguring node {node.name} {waited} "
            f"(it may have found {profile} applied already: its logs say)"
        )
        return f"{what}; the node stays cordoned: {what_to_check(namespace, node.name)}"
    if state == "success":
        what = (
            f"the MIG manager reports success for {profile} but node {node.name} advertises "
            f"{describe_resources(node.allocatable)}, not {describe_resources(expected)}, {waited}; "
            "check the device plugin pod on the node (nvidia-device-plugin-daemonset)"
        )
        return what + "; the node stays cordoned"
    if state in ("pending", "rebooting"):
        what = f"{MIG_STATE_LABEL} on {node.name} is still {state} {waited} (profile {profile})"
    else:
        what = f"the MIG manager did not answer for {profile} on {node.name} {waited} ({MIG_STATE_LABEL}={state!r})"
    return f"{what}; the node stays cordoned: {what_to_check(namespace, node.name)}"
