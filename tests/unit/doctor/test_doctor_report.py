"""The report around the checks: selection, namespace filter, order, --fail-on, JSON, text, rule files, flags."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gpuctl.cli import main
from gpuctl.doctor.findings import Report, Severity
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.rules import read_rule_file
from gpuctl.doctor.run import ALL_CHECKS, diagnose
from gpuctl.errors import ConfigError
from gpuctl.model import NamespaceUsage
from gpuctl.render.doctor import render_report

from .kit import inventory, node, pod, raw, snapshot

REPO = Path(__file__).resolve().parents[3]


def _messy() -> Report:
    """Findings of three severities: a failed MIG node (critical), an untainted node and a quota-less namespace
    (warning), a pod without a priority class (info)."""
    nodes = [node("bare", taints=()), node("mig", mig_config="all-bogus", mig_config_state="failed")]
    pods = [pod("a", "team-a", priority_class=None), pod("b", "team-b")]
    namespaces = [NamespaceUsage(name="team-a", gpu_quota_hard=2)]
    return diagnose(inventory(snapshot(nodes, pods, namespaces=namespaces)))


def test_findings_come_most_severe_first_and_fail_on_compares_by_rank() -> None:
    report = _messy()
    assert [(f.severity.value, f.check) for f in report.findings] == [
        ("critical", "mig.failed"),
        ("warning", "namespaces.gpu-quota"),
        ("warning", "nodes.gpu-taint"),
        ("info", "priority.pod-without-class"),
    ]
    assert all(report.fails(s) for s in Severity)
    calm = report.model_copy(update={"findings": tuple(f for f in report.findings if f.severity is Severity.INFO)})
    assert calm.fails(Severity.INFO) and not calm.fails(Severity.WARNING)


def test_check_ids_are_unique_and_families_select() -> None:
    ids = [c.id for c in ALL_CHECKS]
    assert len(ids) == len(set(ids)) >= 17
    report = diagnose(inventory(snapshot([node("bare", taints=())], [pod("a", priority_class=None)])), DoctorOptions(checks=("nodes",)))
    assert report.checks == ("nodes.gpu-taint",)
    assert [f.check for f in report.findings] == ["nodes.gpu-taint"]


def test_a_namespace_keeps_only_findings_about_its_objects() -> None:
    nodes = [node("bare", taints=())]
    pods = [pod("a", "team-a", priority_class=None), pod("b", "team-b", priority_class=None)]
    report = diagnose(inventory(snapshot(nodes, pods)), DoctorOptions(namespace="team-b"))
    assert [[o.key for o in f.objects] for f in report.findings] == [["Pod/team-b/b"]]


def test_json_round_trips_and_matches_the_schema_fields() -> None:
    report = _messy()
    data = json.loads(report.model_dump_json())
    assert Report.model_validate(data) == report
    assert set(data) == set(Report.model_json_schema()["properties"])
    assert data["findings"][0]["objects"] == [{"kind": "Node", "name": "mig", "namespace": None}]


def test_text_groups_by_severity_and_says_why_and_fix_once_per_check() -> None:
    text = render_report(_messy())
    assert text.splitlines()[0].endswith("findings: 1 critical, 2 warning, 1 info")
    headers = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert headers[1:] == ["CRITICAL (1)", "WARNING (2)", "INFO (1)"]
    assert "    - Node/mig: nvidia.com/mig.config=all-bogus" in text
    assert text.count("why: ") == text.count("fix: ") == 4


def test_a_clean_report_says_so_and_lists_what_was_not_checked() -> None:
    report = diagnose(inventory(snapshot(), rules=None)).model_copy(update={"skipped": ("no Prometheus URL",)})
    text = render_report(report)
    assert "no findings" in text.splitlines()[0]
    assert text.rstrip().endswith("not checked:\n  - no Prometheus URL")


def test_rule_files_plain_and_prometheus_rule(tmp_path: Path) -> None:
    shipped = read_rule_file(REPO / "deploy" / "prometheus" / "gpuctl-rules.yaml")
    assert "GpuMemoryNearlyFull" in {r.name for r in shipped}
    wrapped = tmp_path / "rule.yaml"
    wrapped.write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: team}\nspec:\n  groups:\n"
        "  - name: mem\n    rules:\n    - alert: MemHigh\n      expr: DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_FREE > 0.9\n"
        "    - record: gpu:mem\n      expr: sum(DCGM_FI_DEV_FB_USED)\n"
    )
    assert [(r.name, r.group) for r in read_rule_file(wrapped)] == [("MemHigh", "mem"), ("gpu:mem", "mem")]
    report = diagnose(inventory(snapshot(), rules=[*shipped, *read_rule_file(wrapped)]))
    assert [f.objects[0].name for f in report.findings] == ["MemHigh"]  # the shipped rules are right


def test_a_file_without_rule_groups_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\n")
    with pytest.raises(ConfigError, match="no `groups:` list"):
        read_rule_file(bad)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--check", "nodes.nope"], "unknown check nodes.nope"),
        (["--mig-pending-after", "soon"], "--mig-pending-after"),
        (["--rules", "/nonexistent/rules.yaml"], "cannot read rule file"),
    ],
)
def test_bad_flags_exit_2_before_touching_a_cluster(flags: list[str], message: str, dead_kubeconfig: Path) -> None:
    err = io.StringIO()
    assert main(["doctor", "--kubeconfig", str(dead_kubeconfig), *flags], out=io.StringIO(), err=err) == 2
    assert message in err.getvalue()


def test_schema_needs_no_cluster() -> None:
    out = io.StringIO()
    assert main(["doctor", "--schema"], out=out) == 0
    assert json.loads(out.getvalue())["title"] == "Report"


def test_raw_objects_missing_from_the_inventory_do_not_break_checks() -> None:
    inv = inventory(snapshot([node("n", gpu_replicas=4)]), nodes={"other": raw("other")})
    assert diagnose(inv).findings == ()  # no raw node: the note cannot be read, so nothing is said


def test_an_unreachable_cluster_keeps_its_exit_code(dead_kubeconfig: Path) -> None:
    err = io.StringIO()
    code = main(["doctor", "--kubeconfig", str(dead_kubeconfig), "--fail-on", "info", "--timeout", "5s"], out=io.StringIO(), err=err)
    assert code == 3 and "cannot connect" in err.getvalue()


def test_the_user_guide_lists_every_check_with_its_severity() -> None:
    guide = (REPO / "docs" / "doctor.md").read_text()
    for check in ALL_CHECKS:
        assert f"| `{check.id}` | {check.severity.value} |" in guide


def test_prometheus_api_rules_are_read_and_junk_skipped() -> None:
    from gpuctl.doctor.rules import parse_api_rules

    data = {
        "groups": [
            {"name": "g", "rules": [{"name": "A", "query": "up == 0", "type": "alerting"}, {"name": "B"}, "junk"]},
            {"name": "h", "rules": None},
            "junk",
        ]
    }
    rules = parse_api_rules(data, source="http://prom")
    assert [(r.name, r.expr, r.group, r.source) for r in rules] == [("A", "up == 0", "g", "http://prom")]
    assert parse_api_rules(None, source="x") == []
