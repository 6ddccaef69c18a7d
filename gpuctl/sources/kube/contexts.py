"""The kubeconfig's contexts, for a context switcher (`gpuctl top`'s `x`).

Front ends ask `gpuctl.service.kube_contexts`, never this module: only the
Kubernetes layer reads kubeconfigs. Read the way the connection reads them
(gpuctl.sources.kube.connect): the
--kubeconfig file, else every file on $KUBECONFIG, else ~/.kube/config, merged
by kubernetes_asyncio's own merger, so the list shows exactly the contexts a
switch can open.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes_asyncio.config.kube_config import KubeConfigMerger

from gpuctl.errors import ConfigError
from gpuctl.sources.kube.connect import kubeconfig_paths  # the one definition of where kubeconfigs are


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
    try:
        merged = KubeConfigMerger(paths).config
    except (OSError, yaml.YAMLError, AttributeError, TypeError, KeyError) as e:
        raise ConfigError(f"cannot read kubeconfig {paths}: {e}") from e
    if merged is None:
        raise ConfigError(f"kubeconfig {paths} is empty")
    value = merged.value if isinstance(merged.value, dict) else {}
    names: list[str] = []
    for ctx in value.get("contexts") or ():
        entry = getattr(ctx, "value", ctx)
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    current = value.get("current-context")
    return KubeContexts(names=tuple(names), current=current if isinstance(current, str) else None, paths=paths)
