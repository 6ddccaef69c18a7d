"""The shipped `gpuctl-history` recording rules: what deploy/prometheus/gpuctl-rules.yaml ships is what
gpuctl.sources.recorded builds, and promtool's rule unit tests (Prometheus's own engine and rule group
evaluation, stale markers included) show what they record."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from gpuctl.sources import queries, recorded

RULES_FILE = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "gpuctl-rules.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"  # Debian's prometheus package, as the test bed uses


def _tokens(text: str) -> str:
    return "".join(text.split())


def test_the_shipped_group_is_what_gpuctl_builds() -> None:
    groups = {g["name"]: g for g in yaml.safe_load(RULES_FILE.read_text())["groups"]}
    group = groups[recorded.GROUP]
    assert group["interval"] == f"{queries.RULE_INTERVAL_S}s"
    shipped = [{**r, "expr": _tokens(r["expr"])} for r in group["rules"]]
    assert shipped == [{**r, "expr": _tokens(r["expr"])} for r in queries.recording_rules()]


# Input every 15 s, rules every 60 s (the group's interval); promtool's clock starts at 0, so time() is
# seconds since the test began and every recorded value is an evaluation's time.
L = 'gpu="{gpu}",Hostname="n1",namespace="ml",pod="{pod}"'
RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 60s
tests:
  - interval: 15s
    input_series:
      # one busy sample at 45 s, between evaluations: the 60 s and 120 s evaluations' windows hold it
      - series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="0",Hostname="n1",namespace="ml",pod="burst",UUID="GPU-0",modelName="A100",instance="x:9400",job="dcgm"}}'
        values: '0 0 0 90 0x40'
      # exactly at the threshold is busy; just under is not
      - series: 'DCGM_FI_DEV_GPU_UTIL{{{l0}}}'
        values: '5x40'
      - series: 'DCGM_FI_DEV_GPU_UTIL{{{l1}}}'
        values: '4.9x40'
      # the 4.9 ratio: 0.05 is 5 %
      - series: 'DCGM_FI_DEV_GPU_UTIL_RATIO{{gpu="0",hostname="n2",namespace="ml",pod="ratio"}}'
        values: '0.05x40'
      # a MIG instance: its graphics-engine ratio counts, its constant GPU_UTIL of 0 is not recorded
      - series: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="1",Hostname="n3",GPU_I_ID="3",GPU_I_PROFILE="3g.40gb",namespace="ml",pod="mig"}}'
        values: '0.7x40'
      - series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="1",Hostname="n3",GPU_I_ID="3",GPU_I_PROFILE="3g.40gb",namespace="ml",pod="mig"}}'
        values: '0x40'
      # Kubernetes service discovery renamed the workload's pod labels; the plain pod is the exporter's
      - series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="2",Hostname="n3",namespace="gpu-operator",pod="nvidia-dcgm-exporter-x",exported_namespace="ml",exported_pod="renamed"}}'
        values: '50 0x40'
      # a pod that left after 135 s (busy at 0): about two minutes later both records are gone
      - series: 'DCGM_FI_DEV_GPU_UTIL{{{l2}}}'
        values: '90 0x8'
      # a gap of 5 minutes (no samples 150-435 s): present since it came back (480 s), not since 0
      - series: 'DCGM_FI_DEV_GPU_UTIL{{{l3}}}'
        values: '0x9 _x19 0x20'
      # a gap of 75 s is no gap to the rules (under max_gap_seconds)
      - series: 'DCGM_FI_DEV_GPU_UTIL{{{l4}}}'
        values: '0x9 _x3 0x30'
    promql_expr_test:
      - expr: gpuctl:gpu_last_busy_timestamp_seconds{{pod=~"burst|at-threshold|under|ratio|mig|nvidia-dcgm-exporter-x|left"}}
        eval_time: 3m
        exp_samples:
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",gpu="0",Hostname="n1",namespace="ml",pod="burst",threshold="5"}}'
            value: 120
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l0},threshold="5"}}'
            value: 180
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL_RATIO",gpu="0",hostname="n2",namespace="ml",pod="ratio",threshold="5"}}'
            value: 180
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_PROF_GR_ENGINE_ACTIVE",gpu="1",Hostname="n3",GPU_I_ID="3",namespace="ml",pod="mig",threshold="5"}}'
            value: 180
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",gpu="2",Hostname="n3",namespace="gpu-operator",pod="nvidia-dcgm-exporter-x",exported_namespace="ml",exported_pod="renamed",threshold="5"}}'
            value: 120
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l2},threshold="5"}}'
            value: 120
      # the busy times are kept while the series stay present
      - expr: gpuctl:gpu_last_busy_timestamp_seconds{{pod=~"burst|nvidia-dcgm-exporter-x"}}
        eval_time: 9m
        exp_samples:
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",gpu="0",Hostname="n1",namespace="ml",pod="burst",threshold="5"}}'
            value: 120
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",gpu="2",Hostname="n3",namespace="gpu-operator",pod="nvidia-dcgm-exporter-x",exported_namespace="ml",exported_pod="renamed",threshold="5"}}'
            value: 120
      - expr: '{{__name__=~"gpuctl:.*",pod="left"}}'
        eval_time: 3m
        exp_samples:
          - labels: 'gpuctl:gpu_last_busy_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l2},threshold="5"}}'
            value: 120
          - labels: 'gpuctl:gpu_present_since_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l2},max_gap_seconds="240"}}'
            value: 0
      - expr: '{{__name__=~"gpuctl:.*",pod="left"}}'
        eval_time: 5m
        exp_samples: []
      - expr: gpuctl:gpu_present_since_timestamp_seconds{{pod=~"gap|short-gap|mig"}}
        eval_time: 9m
        exp_samples:
          - labels: 'gpuctl:gpu_present_since_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l3},max_gap_seconds="240"}}'
            value: 480
          - labels: 'gpuctl:gpu_present_since_timestamp_seconds{{gpuctl_metric="DCGM_FI_DEV_GPU_UTIL",{l4},max_gap_seconds="240"}}'
            value: 0
          - labels: 'gpuctl:gpu_present_since_timestamp_seconds{{gpuctl_metric="DCGM_FI_PROF_GR_ENGINE_ACTIVE",gpu="1",Hostname="n3",GPU_I_ID="3",namespace="ml",pod="mig",max_gap_seconds="240"}}'
            value: 0
      # during the gap, once the presence window has passed: nothing recorded for it
      - expr: gpuctl:gpu_present_since_timestamp_seconds{{pod="gap"}}
        eval_time: 5m
        exp_samples: []
"""


def test_the_history_rules_under_promtool(tmp_path: Path) -> None:
    pods = ("at-threshold", "under", "left", "gap", "short-gap")
    labels = {f"l{i}": L.format(gpu=10 + i, pod=pod) for i, pod in enumerate(pods)}
    tests = tmp_path / "gpuctl-history-test.yaml"
    tests.write_text(RULE_TESTS.format(rules=RULES_FILE, **labels))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
