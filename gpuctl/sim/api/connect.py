"""The demo's API connection: a KubeApi over the simulated API of a running demo cluster."""

from __future__ import annotations

from pathlib import Path

from gpuctl.errors import ConfigError
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.policy import Policy
from gpuctl.service import Cluster
from gpuctl.sim.api.access import DEMO_USER
from gpuctl.sim.api.server import SimApiServer
from gpuctl.sim.api.transport import SimTransport
from gpuctl.sources.demo import DemoSource

DEMO_POLICY = Path(__file__).resolve().parent.parent / "demo-policy.yaml"


def demo_api(cluster: Cluster, policy: Policy | None) -> KubeApi:
    """Requests to the simulated API over `cluster`'s demo world, as DEMO_USER unless impersonating."""
    source = next((s for s in cluster.sources if isinstance(s, DemoSource)), None)
    if source is None:
        raise ConfigError("the demo engine needs the demo's cluster (open_cluster with --demo settings)")
    return KubeApi(SimTransport(SimApiServer(source.world, own=DEMO_USER, policy=policy)))
