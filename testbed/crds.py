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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.controlplane import REPO_ROOT, cached_directory
from testbed.kube import RestClient, apply_objects
from testbed.waiting import poll

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


def load_crds(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The CRD objects in `directory`, by project (sub-directory)."""
    crds: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*/*.yaml")):
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        crds.setdefault(path.parent.name, []).extend(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    return crds


def _established(crd: dict[str, Any]) -> bool:
    conditions = crd.get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def install_crds(client: RestClient, directory: Path, *, timeout_s: float = 60) -> InstalledCrds:
    """Create the CRDs (existing ones are left alone) and wait until every one is Established."""
    crds = load_crds(directory)
    await apply_objects(client, [crd for project in crds.values() for crd in project])
    installed = InstalledCrds({project: tuple(c["metadata"]["name"] for c in items) for project, items in crds.items()})

    async def not_established() -> list[str]:
        missing = []
        for name in installed.names:
            response = await client.get("CustomResourceDefinition", name)
            if response.status != 200 or not _established(response.body):
                missing.append(name)
        return missing

    await poll(not_established, lambda missing: not missing, timeout_s=timeout_s, what="upstream CRDs to be Established")
    return installed
