"""`gpuctl playbook list|show`: output, JSON, exit codes, and that an installed wheel carries the playbooks."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpuctl.cli import build_parser, main
from gpuctl.config import load_settings
from gpuctl.errors import ConfigError
from tests.unit.playbooks.conftest import MINIMAL

REPO = Path(__file__).parents[3]
SHIPPED = ["adjust-quota", "reclaim-idle-gpus", "relabel-mig", "scale-pool"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("GPUCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_list() -> None:
    code, out, err = run("playbook", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "APPROVAL", "REVERSIBLE", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:]] == SHIPPED
    reclaim = next(line for line in lines if line.startswith("reclaim-idle-gpus"))
    assert reclaim.split()[1:3] == ["-", "no"]


def test_list_json() -> None:
    code, out, _ = run("playbook", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == SHIPPED
    by_name = {r["name"]: r for r in rows}
    assert by_name["relabel-mig"]["approval_required"] is True and by_name["relabel-mig"]["reversible"] is True
    assert by_name["reclaim-idle-gpus"]["approval_required"] is False
    assert set(by_name["scale-pool"]) == {"name", "description", "approval_required", "reversible", "source"}


def test_show() -> None:
    code, out, _ = run("playbook", "show", "reclaim-idle-gpus")
    assert code == 0
    for needle in (
        "approval: not required",
        "reversible: no",
        "idle_for   duration 30m..7d",
        "max_pods   int 1..50",
        "mode       enum: staged | immediate",
        "min_pod_age  30m",
        "protected namespaces: kube-system",
        "opt-out: pod annotation gpuctl.io/reclaim=never",
        "protected objects are skipped",
        "pdb_respected",
        "create pods/eviction",
        "evict_pods",
    ):
        assert needle in out, needle
    _, quota, _ = run("playbook", "show", "adjust-quota")
    assert "approval: required, lapses after 8h" in quota and "exactly one of: namespace, cluster_queue" in quota
    assert "patch clusterqueues.kueue.x-k8s.io (cluster-scoped)" in quota


def test_show_json_is_the_model() -> None:
    from gpuctl.playbooks.spec import Playbook

    code, out, _ = run("playbook", "show", "scale-pool", "--json")
    data = json.loads(out)
    assert code == 0 and data.pop("source").endswith("scale-pool.yaml")
    playbook = Playbook.model_validate(data)
    assert playbook.guardrails.deadline == 3600 and playbook.exactly_one_of == (("replicas", "gpu_limit"),)


def test_unknown_playbook_exits_2() -> None:
    code, out, err = run("playbook", "show", "reclaim")
    assert code == 2 and out == ""
    assert err == "gpuctl: error: no playbook named 'reclaim' (known: adjust-quota, reclaim-idle-gpus, relabel-mig, scale-pool)\n"


def test_site_playbooks_from_flag_env_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "demo.yaml").write_text(MINIMAL)
    assert "demo" in run("playbook", "list", "--playbooks-dir", str(site))[1]
    monkeypatch.setenv("GPUCTL_PLAYBOOKS_DIR", str(site))
    assert run("playbook", "show", "demo")[0] == 0
    monkeypatch.delenv("GPUCTL_PLAYBOOKS_DIR")
    config = tmp_path / "config.yaml"
    config.write_text(f"playbooks_dir: {site}\n")
    assert json.loads(run("playbook", "list", "--json", "--config", str(config))[1])[1]["name"] == "demo"


def test_bad_site_playbook_exits_2_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(MINIMAL.replace("    max: 5", "    max: lots"))
    code, out, err = run("playbook", "list", "--playbooks-dir", str(tmp_path))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert f"{tmp_path / 'demo.yaml'}:11: parameters.count.max: Input should be a valid integer" in err


def test_settings_check_playbook_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"playbooks_dir '/nonexistent' is not a directory"):
        load_settings(playbooks_dir="/nonexistent")
    with pytest.raises(ConfigError, match=r"policy '/nonexistent/p\.yaml' does not exist"):
        load_settings(policy="/nonexistent/p.yaml")
    policy = tmp_path / "p.yaml"
    policy.write_text("roles: {}\n")
    assert load_settings(policy=str(policy)).policy == policy


def test_installed_wheel_carries_the_playbooks(tmp_path: Path) -> None:
    """Build the wheel from exactly what the Dockerfile copies, install it elsewhere, list from there."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "gpuctl", src / "gpuctl", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(wheels), str(src)],
                   check=True, timeout=240, capture_output=True)  # fmt: skip
    (wheel,) = wheels.glob("gpuctl-*.whl")
    assert {f"gpuctl/playbooks/builtin/{name}.yaml" for name in SHIPPED} <= set(zipfile.ZipFile(wheel).namelist())
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, timeout=240, capture_output=True)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCTL_")}
    env.update(PYTHONPATH=str(site), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    probe = "import gpuctl, sys; from gpuctl.cli import main; print(gpuctl.__file__); sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", probe, "playbook", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    where, listing = result.stdout.split("\n", 1)
    assert where.startswith(str(site))
    assert [row["name"] for row in json.loads(listing)] == SHIPPED
    assert all(row["source"].startswith(str(site)) for row in json.loads(listing))


def test_engine_verbs_parse_and_json_needs_yes() -> None:
    code, _, err = run("playbook", "run", "adjust-quota", "-p", "quota=8", "--json")
    assert code == 2 and "--json prints no prompt: add --yes" in err
    code, _, err = run("playbook", "approve")
    assert code == 2
    args = build_parser().parse_args(["executor", "--name", "executor-0", "--gpuctl-namespace", "ops"])
    assert (args.command, args.replica_name, args.gpuctl_namespace) == ("executor", "executor-0", "ops")  # dest: a setting


def test_an_unreachable_cluster_exits_3_before_anything_is_planned(dead_kubeconfig: Path) -> None:
    code, _, err = run("playbook", "plan", "adjust-quota", "-p", "namespace=a", "-p", "quota=1",
                       "--kubeconfig", str(dead_kubeconfig))  # fmt: skip
    assert code == 3 and err.startswith("gpuctl: error: ")
