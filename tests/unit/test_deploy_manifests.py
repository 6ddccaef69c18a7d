"""deploy/'s files as files: the PrometheusRule is generated from the rules file, the ServiceAccount's
cluster-wide roles only read and impersonate, and the base's settings load. (Applying them to a real
API server is tests/integration/test_deploy.py.)"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuctl.bot.identity import load_identity_map
from gpuctl.config import load_settings
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
READ = {"get", "list", "watch"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_name(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(path) if d["kind"] == kind}


def test_the_prometheusrule_is_the_rules_file_regenerated() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "render-prometheusrule"))["render"]  # not as __main__: writes nothing
    rules = (DEPLOY / "prometheus" / "gpuctl-rules.yaml").read_text()
    generated = (DEPLOY / "prometheus" / "prometheusrule.yaml").read_text()
    assert generated == render(rules), "run scripts/render-prometheusrule"
    assert yaml.safe_load(generated)["spec"] == yaml.safe_load(rules)


def test_cluster_wide_the_service_account_only_reads_and_impersonates_people() -> None:
    roles = _by_name(DEPLOY / "rbac" / "playbookruns.yaml", "ClusterRole")
    bound = {b["roleRef"]["name"] for b in _docs(DEPLOY / "base" / "rbac.yaml") if b["kind"] == "ClusterRoleBinding"}
    assert bound == {"gpuctl:operator", "gpuctl:reader"}
    assert all(set(r["verbs"]) <= READ for r in roles["gpuctl:reader"]["rules"])
    assert not any("configmaps" in r["resources"] or "secrets" in r["resources"] for r in roles["gpuctl:reader"]["rules"])
    impersonation = {tuple(r["resources"]): r for r in roles["gpuctl:operator"]["rules"]}
    assert set(impersonation) == {("users",), ("groups",)}
    assert all(r["verbs"] == ["impersonate"] for r in impersonation.values())
    groups = impersonation[("groups",)]["resourceNames"]
    assert groups and not any(g.startswith("system:") for g in groups)


def test_in_its_namespace_the_service_account_writes_only_leases_and_run_status() -> None:
    (own,) = _by_name(DEPLOY / "base" / "rbac.yaml", "Role").values()
    writes = {(res, verb) for r in own["rules"] for res in r["resources"] for verb in r["verbs"] if verb not in READ}
    assert writes == {("leases", v) for v in ("create", "update", "patch", "delete")} | {("playbookruns/status", "update")}
    (kill_switch,) = [r for r in own["rules"] if r["resources"] == ["configmaps"]]
    assert kill_switch["resourceNames"] == ["gpuctl-kill-switch"]


def test_the_base_settings_policy_and_identity_map_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pods read from ConfigMap gpuctl-config, at the paths config.yaml names (/etc/gpuctl here)."""
    config = DEPLOY / "base" / "config"
    local = tmp_path / "config.yaml"
    local.write_text((config / "config.yaml").read_text().replace("/etc/gpuctl/", f"{config}/"))
    for name in [k for k in os.environ if k.startswith("GPUCTL_")]:
        monkeypatch.delenv(name)
    settings = load_settings(config_file=str(local))
    assert settings.in_cluster and settings.policy == config / "policy.yaml"
    policy = load_policy(settings.policy, playbooks=list(load_catalog(None).playbooks))
    assert policy.roles == {} and policy.unmapped == "none"  # nobody may do anything until the site says so
    assert load_identity_map(settings.slack_identity_map).users == {}
