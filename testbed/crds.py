"""The upstream CustomResourceDefinitions the remediation playbooks act on —
Cluster API (Cluster, MachineDeployment, MachineSet, Machine), Kueue
(ClusterQueue, LocalQueue, ResourceFlavor), Karpenter (NodePool, NodeClaim,
KWOKNodeClass) — as their projects' Go modules ship them, installed into the
test bed's API server.

testbed/fetch-crds.sh fetches them (versions in testbed/versions.env) and caches
them by version. They are installed as released: no conversion or admission
webhooks run, so each project's defaulting and cross-field validation done by
webhooks is absent; schema and CEL validation are the API server's own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from testbed.controlplane import REPO_ROOT, cached_directory
from testbed.kube import RestClient, install_crds

FETCH_SCRIPT = REPO_ROOT / "testbed" / "fetch-crds.sh"


@dataclass(frozen=True)
class InstalledCrds:
    """CRD names by project ("cluster-api", "kueue", "karpenter")."""

    by_project: dict[str, tuple[str, ...]]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for names in self.by_project.values() for name in names)


def fetch_crds() -> Path:
    """Fetch (or find cached) CRD files; returns their directory."""
    return cached_directory(FETCH_SCRIPT)


def crd_files(directory: Path) -> dict[str, list[Path]]:
    """The fetched CRD files by project (`<directory>/<project>/*.yaml`)."""
    return {p.name: sorted(p.glob("*.yaml")) for p in sorted(directory.iterdir()) if p.is_dir()}


async def install_upstream_crds(client: RestClient, directory: Path) -> InstalledCrds:
    """Create the CRDs in `directory` (existing ones are left alone) and wait until each is Established."""
    files = await asyncio.to_thread(crd_files, directory)
    return InstalledCrds({project: tuple(await install_crds(client, *paths)) for project, paths in files.items()})
