"""A MIG manager for the test bed's kwok nodes that behaves like NVIDIA's
k8s-mig-manager (v0.15), together with the two operands whose output it
changes: the device plugin (node resources) and GPU feature discovery (labels).

It follows the real one (NVIDIA/mig-parted cmd/nvidia-mig-manager/main.go and
pkg/mig/reconfigure/reconfigure.go), on every node labelled
`nvidia.com/gpu.deploy.mig-manager=true`:

- A node's `nvidia.com/mig.config` is acted on when the node is first seen
  (the informer's AddFunc, also at start-up) and whenever its value *changes*
  (UpdateFunc). Setting the same value again does nothing, also after
  `failed`. A change arriving during a reconfiguration is applied after it,
  latest value only (the real SyncableMigConfig).
- The config is read at each reconfiguration from ConfigMap
  `<node>-mig-config`, else `default-mig-parted-config` (key config.yaml) in
  the operator namespace. Missing, unparseable, or without the selected name:
  state `failed` at once, never `pending`.
- Already applied: state `success`, nothing paused.
- Otherwise: state `pending`; the operand deploy labels
  (`nvidia.com/gpu.deploy.{device-plugin,gpu-feature-discovery,dcgm-exporter,
  dcgm,nvsm}`) become `paused-for-mig-change` (`false` stays `false`) and,
  the device plugin being gone, the node's GPU resources are no longer
  allocatable. After `reconfigure_s`: a layout the node's GPU model cannot
  hold → `failed`, resources back as they were; else the node's capacity and
  allocatable become what the device plugin advertises for the new layout
  under the node's `nvidia.com/mig.strategy`, GFD's labels follow
  (testbed/gpu_operator.py), and the state becomes `success`. Either way the
  deploy labels go back to `true`.
- `hang(node)`: the next reconfigurations of that node stop after `pending`,
  as when operand pods never go away (the real one then returns without
  setting a state, NVIDIA/gpu-operator#2833): state stays `pending`, operands
  paused, GPUs unallocatable, until a later label change finds it released.
  Whether one hangs is decided as it starts, before its first write: a node
  seen `pending` is not released by `hang(node, False)` half-way through.

Not simulated: draining or evicting pods (the real one does neither), reboots
(`WITH_REBOOT`, state `rebooting`), host systemd GPU clients, validator pods,
writing `<node>-mig-config` from the hardware at start-up, and that on a real
node the device plugin and GFD publish the new resources and labels a little
*after* the state says `success`. The "hardware" is kept in memory: a node has
`testbed.gpuctl.io/gpus` GPUs of the model its `nvidia.com/gpu.product` names;
when first seen, its `nvidia.com/mig.config` is taken as applied if the state
label says `success`, else MIG is taken as disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from gpuctl.errors import MigConfigInvalid
from gpuctl.migparted import (
    CONFIG_KEY,
    DEFAULT_CONFIG_MAP,
    GPU_PRODUCT_LABEL,
    MIG_CONFIG_LABEL,
    MIG_STATE_LABEL,
    MIG_STRATEGY_LABEL,
    GpuLayout,
    MigConfigEntry,
    MigGpuModel,
    MigPartedConfig,
    MigState,
    MigStrategy,
    advertised_resources,
    apply_config,
    gpu_model,
    node_config_map,
)
from testbed.gpu_operator import (
    MIG_MANAGER_DEPLOY_LABEL,
    OPERAND_DEPLOY_LABELS,
    OPERATOR_NAMESPACE,
    PAUSED,
    PHYSICAL_GPUS_ANNOTATION,
    default_mig_parted_config,
    gfd_labels,
    label_patch,
    resource_patch,
)
from testbed.informer import changes
from testbed.kube import Response, RestClient

log = logging.getLogger(__name__)


@dataclass
class _Node:
    """What the simulator keeps per node: the GPUs' layout and the SyncableMigConfig."""

    name: str
    model: MigGpuModel
    layout: tuple[GpuLayout, ...]
    wanted: str = ""
    last_read: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    def set(self, value: str) -> None:
        self.wanted = value
        if value:
            self.wake.set()


class MigManagerSim:
    """Run with `await start()` / `await stop()`; one asyncio task per node."""

    def __init__(self, client: RestClient, *, namespace: str = OPERATOR_NAMESPACE, reconfigure_s: float = 0.3) -> None:
        self.client = client
        self.namespace = namespace
        self.reconfigure_s = reconfigure_s
        self._nodes: dict[str, _Node] = {}
        self._hung: set[str] = set()
        self._unmanaged: set[str] = set()  # warned about once
        self._task: asyncio.Task[None] | None = None

    def hang(self, node: str, hung: bool = True) -> None:
        """Make the reconfigurations of `node` that start from now on stop in `pending` (or stop doing so)."""
        (self._hung.add if hung else self._hung.discard)(node)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="mig-manager-sim")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *(n.worker for n in self._nodes.values())) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._nodes.clear()

    # -- the informer ------------------------------------------------------------
    async def _watch(self) -> None:
        async for change in changes(self.client, "Node", labelSelector=f"{MIG_MANAGER_DEPLOY_LABEL}=true"):
            labels = change.obj["metadata"].get("labels", {})
            if change.type == "DELETED":
                self._unmanaged.discard(change.name)
                gone = self._nodes.pop(change.name, None)
                if gone and gone.worker:
                    gone.worker.cancel()
            elif change.name not in self._nodes and change.name not in self._unmanaged:
                node = self._first_sight(change.obj)
                if node is not None:
                    node.set(labels.get(MIG_CONFIG_LABEL, ""))
            elif change.name in self._nodes and change.old is not None:
                if change.old["metadata"].get("labels", {}).get(MIG_CONFIG_LABEL) != labels.get(MIG_CONFIG_LABEL):
                    self._nodes[change.name].set(labels.get(MIG_CONFIG_LABEL, ""))

    def _first_sight(self, obj: dict[str, Any]) -> _Node | None:
        meta = obj["metadata"]
        labels = meta.get("labels", {})
        model = gpu_model(labels.get(GPU_PRODUCT_LABEL, ""))
        gpus = meta.get("annotations", {}).get(PHYSICAL_GPUS_ANNOTATION)
        if model is None or gpus is None:
            log.warning("node %s: unknown MIG GPU model or no %s; not managed", meta["name"], PHYSICAL_GPUS_ANNOTATION)
            self._unmanaged.add(meta["name"])
            return None
        node = _Node(meta["name"], model, (None,) * int(gpus))
        applied = labels.get(MIG_CONFIG_LABEL)
        if applied and labels.get(MIG_STATE_LABEL) == "success":
            node.layout = self._layout_from_default(node, applied)
        node.worker = asyncio.create_task(self._work(node), name=f"mig-manager-sim/{node.name}")
        self._nodes[node.name] = node
        return node

    @staticmethod
    def _layout_from_default(node: _Node, applied: str) -> tuple[GpuLayout, ...]:
        # As testbed.gpu_operator.mig_node_object lays out the nodes it makes.
        try:
            config = MigPartedConfig.parse(default_mig_parted_config(), source=DEFAULT_CONFIG_MAP)
            return apply_config(config.select(applied, source=DEFAULT_CONFIG_MAP), node.model, node.layout)
        except MigConfigInvalid:
            return node.layout

    async def _work(self, node: _Node) -> None:
        while True:
            await node.wake.wait()
            node.wake.clear()
            if node.wanted == node.last_read:
                continue
            node.last_read = node.wanted
            try:
                await self._reconfigure(node, node.last_read)
            except Exception:
                log.exception("node %s: reconfiguring to %s failed", node.name, node.last_read)

    # -- one reconfiguration -----------------------------------------------------------
    async def _reconfigure(self, node: _Node, selected: str) -> None:
        hangs = node.name in self._hung  # before any write, so what a watcher sees cannot race hang()
        response = await self.client.get("Node", node.name)
        if response.status != 200:
            return
        labels: dict[str, str] = response.body["metadata"].get("labels", {})
        deploy = {label: labels.get(label, "") for label in OPERAND_DEPLOY_LABELS}
        try:
            entries = await self._selected_config(node.name, selected)
        except MigConfigInvalid as exc:
            log.info("node %s: %s", node.name, exc)
            await self._finish(node, "failed", deploy)
            return
        try:
            target: tuple[GpuLayout, ...] | None = apply_config(entries, node.model, node.layout)
        except MigConfigInvalid as exc:
            log.info("node %s: cannot apply %s: %s", node.name, selected, exc)
            target = None  # found out when applying, after pending (as mig-parted apply does)
        if target == node.layout:
            await self._finish(node, "success", deploy)
            return
        await self._patch_labels(node.name, {MIG_STATE_LABEL: "pending"})
        await self._patch_labels(node.name, {label: "false" if v == "false" else PAUSED for label, v in deploy.items()})
        strategy = self._strategy(labels)
        await self._publish_resources(node, node.layout, strategy, allocatable=False)
        if hangs:
            log.info("node %s: hanging in pending (operands never shut down)", node.name)
            return
        await asyncio.sleep(self.reconfigure_s)
        if target is not None:
            node.layout = target
            current = await self.client.get("Node", node.name)
            current_labels = current.body["metadata"].get("labels", {})
            await self._patch_labels(node.name, label_patch(current_labels, gfd_labels(node.model, target, strategy)))
        await self._publish_resources(node, node.layout, strategy, allocatable=True)
        await self._finish(node, "success" if target is not None else "failed", deploy)

    async def _selected_config(self, node: str, selected: str) -> tuple[MigConfigEntry, ...]:
        for name in (node_config_map(node), DEFAULT_CONFIG_MAP):
            response = await self.client.get("ConfigMap", name, self.namespace)
            if response.status == 200:
                source = f"{self.namespace}/{name}"
                text = response.body.get("data", {}).get(CONFIG_KEY)
                if text is None:
                    raise MigConfigInvalid(f"{source} has no {CONFIG_KEY}")
                return MigPartedConfig.parse(text, source=source).select(selected, source=source)
        raise MigConfigInvalid(f"no {node_config_map(node)} or {DEFAULT_CONFIG_MAP} ConfigMap in {self.namespace}")

    @staticmethod
    def _strategy(labels: dict[str, str]) -> MigStrategy:
        value = labels.get(MIG_STRATEGY_LABEL, "single")
        return cast(MigStrategy, value) if value in ("none", "single", "mixed") else "single"

    async def _publish_resources(
        self, node: _Node, layout: tuple[GpuLayout, ...], strategy: MigStrategy, *, allocatable: bool
    ) -> None:
        response = await self.client.get("Node", node.name)
        capacity = response.body.get("status", {}).get("capacity", {})
        wanted = advertised_resources(layout, strategy)
        patch = resource_patch(capacity, wanted)
        usable = patch if allocatable else {key: (None if value is None else "0") for key, value in patch.items()}
        await self._checked(
            self.client.patch("Node", node.name, {"status": {"capacity": patch, "allocatable": usable}}, subresource="status"),
            f"status of {node.name}",
        )

    async def _finish(self, node: _Node, state: MigState, deploy: dict[str, str]) -> None:
        """The real setState: operands back (unless `false`), then the state label."""
        await self._patch_labels(node.name, {label: "false" if v == "false" else "true" for label, v in deploy.items()})
        await self._patch_labels(node.name, {MIG_STATE_LABEL: state})
        log.info("node %s: %s is %s", node.name, node.last_read, state)

    async def _patch_labels(self, node: str, labels: dict[str, str | None]) -> None:
        await self._checked(self.client.patch("Node", node, {"metadata": {"labels": labels}}), f"labels of {node}")

    @staticmethod
    async def _checked(request: Awaitable[Response], what: str) -> None:
        response = await request
        if response.status != 200:
            raise RuntimeError(f"patching {what}: {response.status} {response.body.get('message')}")
