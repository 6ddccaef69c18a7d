"""The gpuctl command end to end: output shapes and exit codes (0 ok, 1 a source stopped, 2 config, 3 cluster)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuctl import __version__
from gpuctl.cli import EXIT_ERROR, main
from gpuctl.model import Snapshot
from gpuctl.state.records import Kind, MetricsBatch
from gpuctl.state.store import ClusterStore


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no GPUCTL_* settings, no real kubeconfig or config file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBE"))}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    clean["HOME"] = str(tmp_path / "home")
    return clean


def gpuctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuctl.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpuctl {__version__}"


def test_snapshot_demo_summary(env: dict[str, str]) -> None:
    result = gpuctl("snapshot", "--demo", env=env)
    assert result.returncode == 0, result.stderr
    for heading in ("POOLS", "NAMESPACES", "TOP IDLE HOLDERS", "cluster: context demo, connected"):
        assert heading in result.stdout


def test_snapshot_demo_json_is_the_model(env: dict[str, str]) -> None:
    result = gpuctl("snapshot", "--demo", "--json", "--demo-seed", "3", env=env)
    assert result.returncode == 0, result.stderr
    snap = Snapshot.model_validate_json(result.stdout)
    assert snap.nodes and snap.gpus and snap.pods and snap.watch.source == "demo"
    assert {g.node for g in snap.gpus} <= {n.name for n in snap.nodes}


def test_schema_needs_no_cluster() -> None:
    out = io.StringIO()
    assert main(["snapshot", "--schema"], out=out) == 0
    assert json.loads(out.getvalue())["title"] == "Snapshot"


def test_unreachable_cluster_exits_3_with_one_line(env: dict[str, str], dead_kubeconfig: Path) -> None:
    result = gpuctl("snapshot", "--kubeconfig", str(dead_kubeconfig), "--timeout", "20s", env=env)
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("gpuctl: error: cannot connect to the Kubernetes API at https://127.0.0.1:1")
    assert "context dead" in lines[0] and "connection refused" in lines[0]


def test_kubeconfig_from_environment(env: dict[str, str], dead_kubeconfig: Path) -> None:
    result = gpuctl("snapshot", env={**env, "KUBECONFIG": str(dead_kubeconfig)})
    assert result.returncode == 3 and "127.0.0.1:1" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["snapshot", "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig does not exist"),
        (["snapshot"], "no kubeconfig found"),
        (["snapshot", "--demo", "--idle-window", "soon"], "idle_window_s='soon'"),
        (["snapshot", "--demo", "--local"], "one of --demo and --local"),
        (["top", "--demo", "--refresh", "-5"], "refresh_s"),
        (["snapshot", "--config", "/nonexistent/gpuctl.yaml"], "config file /nonexistent/gpuctl.yaml does not exist"),
        (["snapshot", "--demo", "--metrics-selector", "cluster=prod-a"], "metrics_selector='cluster=prod-a': expected a quoted"),
        (["serve", "--demo", "--no-bot", "--no-executor"], "--no-bot and --no-executor leave nothing to serve"),
        (["serve", "--demo", "--leader-lease", "5", "--leader-renew-deadline", "6s"], "leader_renew_deadline_s (6) < leader_lease_s (5)"),
        (["executor", "--leader-retry", "0"], "leader_retry_s"),
    ],
)
def test_bad_configuration_exits_2(env: dict[str, str], args: list[str], needle: str) -> None:
    result = gpuctl(*args, env=env)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_context_exits_2(env: dict[str, str], dead_kubeconfig: Path) -> None:
    result = gpuctl("snapshot", "--kubeconfig", str(dead_kubeconfig), "--context", "nope", env=env)
    assert result.returncode == 2 and "context 'nope'" in result.stderr


def test_bad_arguments_exit_2(env: dict[str, str]) -> None:
    assert gpuctl("snapshot", "--frobnicate", env=env).returncode == 2
    assert gpuctl(env=env).returncode == 2  # a command is required


def test_env_and_config_file_reach_the_command(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "xdg" / "gpuctl" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("demo: true\nidle_threshold_pct: 7.5\n")
    result = gpuctl("snapshot", "--json", env={**env, "GPUCTL_IDLE_WINDOW_S": "45m"})
    assert result.returncode == 0, result.stderr
    snap = Snapshot.model_validate_json(result.stdout)
    assert snap.idle_threshold_pct == 7.5 and snap.idle_window_s == 2700


class ListsThenStops:
    """Everything a snapshot needs, then an unexpected error: what gpuctl snapshot sees of a bug in a source."""

    name = "demo"

    async def run(self, store: ClusterStore) -> None:
        for kind in Kind:
            store.replace(kind, [])
        store.set_metrics_source("demo")
        store.apply_metrics(MetricsBatch(at=datetime.now(UTC), samples=()))
        raise KeyError("name")


@pytest.mark.parametrize("as_json", [False, True])
def test_a_stopped_source_exits_1_with_one_line_and_prints_no_picture(
    as_json: bool, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n not in env]:
        monkeypatch.delenv(name)  # in process: the same clean environment the subprocess tests get
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    out, err = io.StringIO(), io.StringIO()
    args = ["snapshot", "--demo", *(["--json"] if as_json else [])]
    assert main(args, out=out, err=err, sources=[ListsThenStops()]) == EXIT_ERROR
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpuctl: error: the demo source stopped: 'name' (KeyError)")


def test_snapshot_exits_quickly_but_completely(env: dict[str, str], tmp_path: Path) -> None:
    # `run` ends a snapshot with os._exit after its output: the output is whole, and atexit handlers still ran.
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).touch)\n"
        "sys.argv = ['gpuctl', 'snapshot', '--demo', '--json']\n"
        "from gpuctl.cli import run\n"
        "run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert Snapshot.model_validate_json(result.stdout).gpus and marker.exists()


def test_serve_help_names_what_a_deployment_must_match(env: dict[str, str]) -> None:
    """The manifests (branch deploy) take the Lease, the variables and the endpoints from here."""
    result = gpuctl("serve", "--help", env=env)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for fact in ('Lease "gpuctl-leader"', "GPUCTL_REPLICA_NAME", "GPUCTL_GPUCTL_NAMESPACE", "GET /healthz", "GET /readyz",
                 "--health-port (default 8081;", "POST /alertmanager", "--no-bot", "--no-executor"):  # fmt: skip
        assert fact in text, fact


def test_serve_without_a_reachable_cluster_exits_3_with_one_line(env: dict[str, str], dead_kubeconfig: Path) -> None:
    result = gpuctl("serve", "--no-bot", "--kubeconfig", str(dead_kubeconfig), "--health-port", "0", "--host", "127.0.0.1",
                    env=env)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("gpuctl: error: ") and len(result.stderr.strip().splitlines()) == 1
