from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.playbooks.loader import Catalog, load_catalog

# A small valid playbook; tests change one line and check where the error points.
MINIMAL = """\
name: demo
description: a playbook for tests
approval:
  required: false
reversible: false
parameters:
  count:
    type: int
    default: 2
    min: 1
    max: 5
    help: how many
target:
  select: pool
  by: [count]
  scopes: [pool]
actions: [cordon_node]
permissions:
  - {verb: patch, resource: nodes, namespaced: false}
guardrails:
  deadline: 5m
"""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    return folder
