from __future__ import annotations

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
