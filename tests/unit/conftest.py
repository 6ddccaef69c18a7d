from __future__ import annotations

import signal
from pathlib import Path

import pytest

# An API server nobody listens on.
DEAD_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: someone
  user: {token: not-a-real-token}
contexts:
- name: dead
  context: {cluster: dead, user: someone}
current-context: dead
"""


@pytest.fixture
def dead_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "dead.yaml"
    path.write_text(DEAD_KUBECONFIG)
    return path


def ignoring_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job (`cmd &`)


# How a serving gpuctl process is stopped (signal, how it was started) and the exit code it must end with.
stopped_by_a_signal = pytest.mark.parametrize(
    ("stop", "started", "code"),
    [(signal.SIGINT, None, 130), (signal.SIGINT, ignoring_sigint, 130), (signal.SIGTERM, None, 0)],
    ids=["interrupt", "interrupt-when-started-ignoring-it", "terminate"],
)
