"""The alert rules file: matching, parameters from labels, and start-up checks against catalog and policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.bot.alert_rules import AlertRules, Rule, arguments, load_alert_rules
from gpuctl.errors import BotConfigError, ParameterError
from gpuctl.identity import Identity
from gpuctl.playbooks.loader import Catalog, load_catalog
from gpuctl.playbooks.policy import AlertRule, Policy, Role


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def load(tmp_path: Path, text: str, catalog: Catalog, policy: Policy | None = None) -> AlertRules:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_alert_rules(path, catalog, policy or Policy())


def test_first_matching_rule_wins_and_labels_must_all_match() -> None:
    rules = AlertRules(channel="C0ALERTS1", rules=(
        Rule(alert="GpuIdleWhileAllocated", labels={"severity": "critical"}, playbook="reclaim-idle-gpus", mode="propose"),
        Rule(alert="GpuIdleWhileAllocated", playbook="reclaim-idle-gpus", fixed={"max_pods": "1"}),
    ))  # fmt: skip
    assert rules.match({"alertname": "GpuIdleWhileAllocated", "severity": "critical"}) is rules.rules[0]
    assert rules.match({"alertname": "GpuIdleWhileAllocated", "severity": "warning"}) is rules.rules[1]
    assert rules.match({"alertname": "GpuHot"}) is None
    assert rules.match({}) is None


def test_parameters_come_from_the_first_label_present(catalog: Catalog) -> None:
    rule = Rule(alert="A", playbook="reclaim-idle-gpus", params={"namespace": ("exported_namespace", "namespace")},
                fixed={"max_pods": "3"})  # fmt: skip
    assert rule.given({"namespace": "team-b"}) == {"max_pods": "3", "namespace": "team-b"}
    assert rule.given({"exported_namespace": "team-a", "namespace": "monitoring"})["namespace"] == "team-a"
    assert rule.given({"exported_namespace": "", "namespace": "team-b"})["namespace"] == "team-b"
    args = arguments(rule, {"namespace": "team-b"}, catalog)
    assert (args["namespace"], args["max_pods"], args["idle_for"]) == ("team-b", 3, 7200.0)
    with pytest.raises(ParameterError, match="namespace="):
        arguments(rule, {"namespace": "Team B; rm -rf /"}, catalog)


def test_a_valid_file_loads(tmp_path: Path, catalog: Catalog) -> None:
    rules = load(tmp_path, """\
channel: C0ALERTS1
mention: S0ONCALL1
rules:
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    params: {namespace: exported_namespace, node: [Hostname, hostname]}
    fixed: {mode: staged}
""", catalog)  # fmt: skip
    (rule,) = rules.rules
    assert rule.params == {"namespace": ("exported_namespace",), "node": ("Hostname", "hostname")}
    assert (rules.mention, rule.mode) == ("S0ONCALL1", "propose")


def test_problems_name_line_and_field(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(BotConfigError) as caught:
        load(tmp_path, """\
channel: C0ALERTS1
rules:
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpu
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    params: {nmspace: namespace}
    fixed: {max_pods: "500"}
  - alert: GpuIdleWhileAllocated
    playbook: reclaim-idle-gpus
    mode: auto
""", catalog)  # fmt: skip
    problems = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "no playbook 'reclaim-idle-gpu'" in problems[(4, "rules.0.playbook")]
    assert "has no parameter 'nmspace'" in problems[(7, "rules.1.params.nmspace")]
    assert "max_pods='500'" in problems[(8, "rules.1.fixed.max_pods")]
    assert "auto needs the gpuctl policy to let alerts start reclaim-idle-gpus" in problems[(11, "rules.2.mode")]


def test_auto_is_accepted_when_the_policy_lets_alerts_start_the_playbook(tmp_path: Path, catalog: Catalog) -> None:
    runner = Identity(user="gpuctl-alerts")
    policy = Policy(roles={"alerts": Role(users=("gpuctl-alerts",), run=("reclaim-idle-gpus",), namespaces=("*",))},
                    alerts=(AlertRule(playbook="reclaim-idle-gpus", run_as=runner, max_runs_per_hour=2),))  # fmt: skip
    rules = load(tmp_path, "channel: C0ALERTS1\nrules:\n  - {alert: X, playbook: reclaim-idle-gpus, mode: auto}\n", catalog, policy)
    assert rules.rules[0].mode == "auto"


def test_schema_errors(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(BotConfigError) as caught:
        load(tmp_path, "channel: '#alerts'\nrules:\n  - {alert: X, playbook: reclaim-idle-gpus, params: {namespace: a}, fixed: {namespace: b}, mode: yolo}\n", catalog)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"channel", "rules[0].mode"}
    with pytest.raises(BotConfigError, match="namespace both taken from labels and fixed: choose one"):
        load(tmp_path, "channel: C0A1\nrules:\n  - {alert: X, playbook: reclaim-idle-gpus, params: {namespace: a}, fixed: {namespace: b}}\n", catalog)
