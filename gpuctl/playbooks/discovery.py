"""Which version of a custom resource's API group the cluster serves.

Cluster API and Kueue each serve two versions during a migration (v1beta2 and
the deprecated v1beta1), and a cluster may be on either side of it. Playbooks
ask discovery (readable by every authenticated user) rather than assume, and
use the newest version they understand that the API server serves.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuctl.errors import NotInstalled
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import check

CLUSTER_API = "cluster.x-k8s.io"
KUEUE = "kueue.x-k8s.io"
KARPENTER = "karpenter.sh"

# Newest first: the versions whose fields the playbooks read and write (the same paths in each).
UNDERSTOOD: dict[str, tuple[str, ...]] = {
    CLUSTER_API: ("v1beta2", "v1beta1"),
    KUEUE: ("v1beta2", "v1beta1"),
    KARPENTER: ("v1",),
}


async def served_version(client: ActingClient, group: str, understood: Sequence[str] | None = None) -> str:
    """The newest understood version of `group` the API server serves; NotInstalled when it serves none."""
    wanted = tuple(understood or UNDERSTOOD[group])
    response = await client.api.request("GET", f"/apis/{group}", acting_as=client.identity)
    if response.call.status == 404:
        raise NotInstalled(
            f"the API server serves no {group} API: its CustomResourceDefinitions are not installed",
            hint=f"install the CRDs of the project that owns {group}, or pick a target it does not manage",
        )
    served = {v.get("version") for v in check(response, what=f"discover the {group} API").get("versions") or ()}
    for version in wanted:
        if version in served:
            return version
    raise NotInstalled(
        f"the API server serves {group} only as {', '.join(sorted(v for v in served if v)) or 'nothing'};"
        f" gpuctl understands {', '.join(wanted)}",
        hint="upgrade the project's CRDs (or gpuctl)",
    )
