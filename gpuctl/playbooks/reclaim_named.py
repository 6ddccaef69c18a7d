"""reclaim-idle-gpus with `pods`: why a named pod the live picture has no GPU pod for cannot be reclaimed.

The selection (reclaim_select) accounts for every named pod it holds; the rest are
read from the API server as the requester's reader, so the plan says exactly which
of them does not exist and which exists but holds no GPU, instead of one vague line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gpuctl.errors import ClusterError
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.plan import Skipped, TargetRef
from gpuctl.playbooks.pod_now import read_pod
from gpuctl.playbooks.spec import pod_keys

NOT_RECLAIMABLE = "not reclaimable: "  # how each left-out named pod's reason begins (the TUI and bot read plans as text)


def named_pods(value: object) -> tuple[str, ...] | None:
    """The `pods` parameter's keys (it was validated: normalized text), or None when not given."""
    return None if value is None else pod_keys(str(value))


async def unknown_pods(reader: ActingClient, keys: Sequence[str], *, concurrency: int = 8) -> list[Skipped]:
    """One Skipped per key, in order: the pod does not exist, or exists but holds no GPU in the live picture."""
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> Skipped:
        namespace, _, name = key.partition("/")
        target = TargetRef(kind="Pod", name=name, namespace=namespace)
        try:
            async with gate:
                now, _ = await read_pod(reader, namespace, name)
        except ClusterError as e:
            return Skipped(target=target, reason=f"{NOT_RECLAIMABLE}it is not among the GPU pods gpuctl sees, and "
                                                 f"reading it failed: {e}")  # fmt: skip
        if now is None:
            return Skipped(target=target, reason=f"{NOT_RECLAIMABLE}no such pod")
        where = f"phase {now.phase}" + (f" on node {now.node}" if now.node else ", not scheduled")
        return Skipped(target=target, reason=f"{NOT_RECLAIMABLE}it holds no GPU that gpuctl sees ({where})")

    return list(await asyncio.gather(*(one(key) for key in keys)))
