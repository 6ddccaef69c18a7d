"""Which code carries out each playbook: playbook name → the module whose `LOGIC` implements it.

A playbook's definition (YAML) says what it may do; its logic module (one per
playbook, see logic.py) says how. Modules are imported only when a playbook is
used, so `gpuctl playbook list` or a run of one playbook never loads the others.
A site playbook (a built-in copied under a new name, see loader.py) runs the
logic of the built-in that selects the same kind of target; the engine still
holds its steps to the actions and guardrails the site's file declares.
Tests hand the engine their own Registry (`Registry(logics={...})`): the one
seam for a playbook whose logic is not one of gpuctl's modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType

from gpuctl.errors import PlaybookError
from gpuctl.playbooks.logic import PlaybookLogic
from gpuctl.playbooks.spec import Playbook, Selector

BUILTIN_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "reclaim-idle-gpus": "gpuctl.playbooks.reclaim",
        "relabel-mig": "gpuctl.playbooks.relabel_mig",
        "scale-pool": "gpuctl.playbooks.scale_pool",
        "adjust-quota": "gpuctl.playbooks.adjust_quota",
    }
)


# The built-in whose logic a site playbook runs, by what its target selects.
BY_SELECTOR: Mapping[Selector, str] = MappingProxyType(
    {
        Selector.idle_gpu_pods: "reclaim-idle-gpus",
        Selector.node: "relabel-mig",
        Selector.pool: "scale-pool",
        Selector.quota: "adjust-quota",
    }
)


class Registry:
    """Playbook logic by name: `logics` given directly win over `modules` imported on first use."""

    def __init__(self, modules: Mapping[str, str] = BUILTIN_MODULES, logics: Mapping[str, PlaybookLogic] | None = None) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, PlaybookLogic] = dict(logics or {})

    def names(self) -> list[str]:
        return sorted({*self._modules, *self._loaded})

    def logic_for(self, playbook: Playbook) -> PlaybookLogic:
        """The logic registered under the playbook's name, else the built-in one for its kind of target."""
        if playbook.name in self._loaded or playbook.name in self._modules:
            return self.logic(playbook.name)
        return self.logic(BY_SELECTOR[playbook.target.select])

    def logic(self, playbook: str) -> PlaybookLogic:
        """The logic for `playbook`; PlaybookError if none is registered or its module does not provide it."""
        if playbook in self._loaded:
            return self._loaded[playbook]
        module_name = self._modules.get(playbook)
        if module_name is None:
            raise PlaybookError(
                f"playbook {playbook!r} has no logic in this gpuctl",
                hint=f"playbooks with logic: {', '.join(self.names()) or 'none'}; a site playbook needs a built-in's logic",
            )
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise  # the module exists but something it imports does not: a bug, not a missing playbook
            raise PlaybookError(f"playbook {playbook!r}: its logic module {module_name} is not installed") from e
        logic = getattr(module, "LOGIC", None)
        if logic is None or getattr(logic, "name", None) != playbook:
            raise PlaybookError(f"{module_name} does not provide LOGIC for playbook {playbook!r}")
        self._loaded[playbook] = logic
        return logic
