"""The pure parts of the test-bed Cluster API provider: replicas defaulting and
which Machines a scale-down removes."""

from __future__ import annotations

from typing import Any

from testbed.capi_provider import (
    DELETE_MACHINE_ANNOTATION,
    MAX_SIZE_ANNOTATION,
    MIN_SIZE_ANNOTATION,
    deletion_order,
    desired_replicas,
    machine_deployment_object,
)


def _machine(name: str, created: str, ordinal: int, *, marked: bool = False) -> dict[str, Any]:
    annotations = {"testbed.gpuctl.io/machine-ordinal": str(ordinal), **({DELETE_MACHINE_ANNOTATION: "true"} if marked else {})}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}}


def test_replicas_default_like_the_capi_webhook() -> None:
    md = machine_deployment_object("md", "ns", cluster="c", replicas=None)
    assert desired_replicas(md) == 1
    md["metadata"]["annotations"] |= {MIN_SIZE_ANNOTATION: "2", MAX_SIZE_ANNOTATION: "5"}
    assert desired_replicas(md) == 2
    assert desired_replicas(machine_deployment_object("md", "ns", cluster="c", replicas=0)) == 0


def test_marked_machines_go_first_then_by_age() -> None:
    a = _machine("a", "2026-01-01T00:00:00Z", 1)
    b = _machine("b", "2026-01-01T00:00:00Z", 2, marked=True)
    c = _machine("c", "2026-01-01T00:00:00Z", 3)  # same second: the ordinal orders them
    d = _machine("d", "2026-01-01T00:00:05Z", 4)
    assert [m["metadata"]["name"] for m in deletion_order([a, b, c, d], "Random")] == ["b", "d", "c", "a"]
    assert [m["metadata"]["name"] for m in deletion_order([a, b, c, d], "Newest")] == ["b", "d", "c", "a"]
    assert [m["metadata"]["name"] for m in deletion_order([a, b, c, d], "Oldest")] == ["b", "a", "c", "d"]
