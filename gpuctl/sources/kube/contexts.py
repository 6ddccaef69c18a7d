"""The kubeconfig's contexts, for a context switcher (`gpuctl top`'s `x`).

Front ends ask `gpuctl.service.kube_contexts`, never this module: only the
Kubernetes layer reads kubeconfigs. Read the way the connection reads them
(gpuctl.sources.kube.connect): the
--kubeconfig file, else every file on $KUBECONFIG, else ~/.kube/config, merged
as kubectl merges them (gpuctl.sources.kube.kubeconfig), so the list shows
exactly the contexts a switch can open.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpuctl.errors import ConfigError
from gpuctl.sources.kube.connect import kubeconfig_paths  # the one definition of where kubeconfigs are
from gpuctl.sources.kube.kubeconfig import read_merged


@dataclass(frozen=True, slots=True)
class KubeContexts:
    names: tuple[str, ...]
    current: str | None  # the kubeconfig's current-context
    paths: str  # what was read, for messages


def read_contexts(kubeconfig: Path | None) -> KubeContexts:
    """The contexts of the kubeconfig gpuctl would connect with. Raises ConfigError when there is none."""
    paths = kubeconfig_paths(kubeconfig)
    if paths is None:
        raise ConfigError("no kubeconfig found ($KUBECONFIG unset or missing, no ~/.kube/config)")
    merged = read_merged(paths)  # its errors name the file
    if not merged.contexts and merged.current_context is None:
        raise ConfigError(f"kubeconfig {paths} is empty")
    return KubeContexts(names=tuple(merged.contexts), current=merged.current_context, paths=paths)
