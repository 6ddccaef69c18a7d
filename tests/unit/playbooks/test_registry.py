"""Playbook name → logic module, imported on first use; site playbooks run their built-in's logic."""

from __future__ import annotations

import sys
import types

import pytest

from gpuctl.errors import PlaybookError
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.registry import BUILTIN_MODULES, Registry


class _Logic:
    def __init__(self, name: str) -> None:
        self.name = name


def test_every_shipped_playbook_has_a_module(catalog: Catalog) -> None:
    assert sorted(BUILTIN_MODULES) == sorted(catalog.playbooks)
    assert all(module.startswith("gpuctl.playbooks.") for module in BUILTIN_MODULES.values())


def test_modules_are_imported_on_first_use_and_must_provide_logic(monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = types.ModuleType("site_quota"), types.ModuleType("site_nothing")
    good.LOGIC = _Logic("adjust-quota")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "site_quota", good)
    monkeypatch.setitem(sys.modules, "site_nothing", bad)
    registry = Registry({"adjust-quota": "site_quota", "scale-pool": "site_nothing", "relabel-mig": "no_such_module_x"})
    assert registry.logic("adjust-quota") is good.LOGIC  # type: ignore[attr-defined]
    with pytest.raises(PlaybookError, match="site_nothing does not provide LOGIC for playbook 'scale-pool'"):
        registry.logic("scale-pool")
    with pytest.raises(PlaybookError, match="its logic module no_such_module_x is not installed"):
        registry.logic("relabel-mig")
    with pytest.raises(PlaybookError, match="'drain-all' has no logic in this gpuctl"):
        registry.logic("drain-all")


def test_given_logic_wins_and_site_playbooks_use_their_builtins_logic(catalog: Catalog) -> None:
    quota = _Logic("adjust-quota")
    registry = Registry({}, logics={"adjust-quota": quota})
    copy = catalog.get("adjust-quota").model_copy(update={"name": "adjust-quota-team-a"})
    assert registry.logic_for(copy) is quota
    assert registry.logic_for(catalog.get("adjust-quota")) is quota
