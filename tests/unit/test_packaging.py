"""The wheel the Dockerfile builds, built here from exactly the files its build stage copies, installed
in a clean virtual environment, runs: `gpuctl --version`, the bot's `--help`, and the built-in playbooks
(package data) load from the installed copy. No registry is reachable, so the image itself is not built:
gpuctl's dependencies come from this test run's environment through a .pth file, and only gpuctl
itself is installed from the wheel."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from gpuctl import __version__

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]


def build_stage_sources() -> list[str]:
    """The paths the Dockerfile's first stage COPYs from the build context."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    sources: list[str] = []
    for line in lines[stages[0] : stages[1]]:
        if line.startswith("COPY "):
            sources += shlex.split(line)[1:-1]
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with gpuctl installed from the wheel; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in build_stage_sources():
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    wheels = tmp / "wheels"
    subprocess.run([*PIP, "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(wheels), str(src)],
                   check=True, timeout=240, capture_output=True)  # fmt: skip
    (wheel,) = wheels.glob("gpuctl-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=240, capture_output=True)  # fmt: skip
    # The dependencies, from this run's environment (appended after the venv's own site-packages).
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())  # fmt: skip
    (site / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "PYTHON"))}
    env.update(XDG_CONFIG_HOME=str(cwd / "xdg"), HOME=str(cwd))
    return subprocess.run([str(bin_dir / "gpuctl"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_the_build_stage_copies_what_the_wheel_needs() -> None:
    assert sorted(build_stage_sources()) == ["README.md", "gpuctl", "pyproject.toml"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and {f"!{name}" for name in ("pyproject.toml", "README.md", "gpuctl/")} <= set(ignored)


def test_the_installed_console_script_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed / "python"), "-c", "import gpuctl; print(gpuctl.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(installed.parent) and not Path(where).is_relative_to(ROOT)
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"gpuctl {__version__}", version.stderr
    help_ = run(installed, "bot", "serve", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "--socket-mode" in help_.stdout, help_.stderr
    serve = run(installed, "serve", "--help", cwd=tmp_path)  # the image's command (Dockerfile CMD, deploy/base)
    assert serve.returncode == 0, serve.stderr
    assert all(flag in serve.stdout for flag in ("--no-executor", "--leader-lease", "--health-port", "--socket-mode"))


def test_the_wheel_carries_everything_gpuctl_loads_at_run_time(installed: Path, tmp_path: Path) -> None:
    """Every file under gpuctl/ that is not Python source is package data the code reads (playbooks, TUI
    styles), except the builtin folder's README; the installed CLI lists the playbooks from itself."""
    data = {p.relative_to(ROOT / "gpuctl") for p in (ROOT / "gpuctl").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}  # fmt: skip
    site = next(installed.parent.glob("lib/python3*/site-packages/gpuctl"))
    missing = {str(p) for p in data if not (site / p).is_file()}
    assert missing == {"playbooks/builtin/README.md"}
    listed = run(installed, "playbook", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"source": "' + str(site) in listed.stdout
