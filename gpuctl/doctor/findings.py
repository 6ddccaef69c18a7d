"""What `gpuctl doctor` reports: findings, the checks that make them, and the report (its JSON shape).

Severities follow the Prometheus alert convention gpuctl's own rules use
(deploy/prometheus/gpuctl-rules.yaml), lowest first:

    info      a practice not followed that costs nothing yet (no note, no priority class on a pod)
    warning   something that will bite: jobs that preempt wrongly, idle or unmeasured GPUs, no quota
    critical  broken now: a failed MIG reconfiguration, GPU nodes open to every pod, wrong memory alerts

`gpuctl doctor --fail-on SEVERITY` exits 1 when a finding at or above it exists.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

REPORT_VERSION = 1


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Involved(_Frozen):
    """One object a finding is about: a Kubernetes object, or a Prometheus rule (kind PrometheusRule)."""

    kind: str = Field(description="Node, Pod, Namespace, Job, PriorityClass, Gpu, PrometheusRule")
    name: str
    namespace: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


class Check(_Frozen):
    """One practice the doctor checks: what it looks for, why it matters, how to fix it."""

    id: str = Field(description="stable id, e.g. nodes.gpu-taint; `--check` selects by it or its family prefix")
    severity: Severity
    title: str = Field(description="what is wrong, in a few words")
    why: str
    fix: str


class Finding(_Frozen):
    check: str = Field(description="the Check id")
    severity: Severity
    title: str
    detail: str = Field(description="what was seen on these objects")
    objects: tuple[Involved, ...]
    why: str
    fix: str


class Report(_Frozen):
    """`gpuctl doctor --json` prints this."""

    report_version: int = REPORT_VERSION
    taken_at: datetime
    context: str | None = Field(None, description="the kubeconfig context checked")
    checks: tuple[str, ...] = Field(description="ids of the checks that ran")
    findings: tuple[Finding, ...] = Field(description="most severe first, then by check id")
    skipped: tuple[str, ...] = Field(
        (), description="why a part could not be checked (e.g. no Prometheus URL, a list RBAC forbids)"
    )

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def fails(self, threshold: Severity) -> bool:
        return any(f.severity.at_least(threshold) for f in self.findings)


def finding(check: Check, detail: str, *objects: Involved) -> Finding:
    """A finding of `check` about `objects`."""
    return Finding(
        check=check.id, severity=check.severity, title=check.title, detail=detail, objects=objects,
        why=check.why, fix=check.fix,
    )  # fmt: skip


def node(name: str) -> Involved:
    return Involved(kind="Node", name=name)


def pod(namespace: str, name: str) -> Involved:
    return Involved(kind="Pod", name=name, namespace=namespace)


def namespace(name: str) -> Involved:
    return Involved(kind="Namespace", name=name)
