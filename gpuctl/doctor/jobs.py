"""Jobs: a finished Job holds no GPU, and every GPU Job cleans itself up (`ttlSecondsAfterFinished`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gpuctl.doctor.findings import Check, Finding, Involved, Severity, finding, pod
from gpuctl.doctor.inventory import Inventory
from gpuctl.doctor.options import DoctorOptions
from gpuctl.sources.kube.trim import pod_gpu_requests

FINISHED_HOLDING = Check(
    id="jobs.finished-holding-gpus",
    severity=Severity.WARNING,
    title="finished Job whose pods still hold GPUs",
    why="The Job is Complete or Failed, yet pods of it are still scheduled with GPUs requested: GPUs nobody's "
    "work is using, invisible to the Job's own status.",
    fix="Delete the leftover pods (kubectl delete pod ...), or the Job itself; find why they outlived it "
    "(a stuck node, a finalizer, a sidecar that never exits).",
)
NO_TTL = Check(
    id="jobs.no-ttl",
    severity=Severity.INFO,
    title="GPU Job without ttlSecondsAfterFinished",
    why="Finished Jobs and their pods stay forever: the namespace fills with dead pods, and tools that count "
    "a Job's pods (quota dashboards, reclaimers) keep reading them.",
    fix="Set spec.ttlSecondsAfterFinished on the Job (e.g. 86400), or run it from a CronJob with history limits.",
)
CHECKS = (FINISHED_HOLDING, NO_TTL)


def finished(job: Mapping[str, Any]) -> str | None:
    """The condition that finished the Job (Complete or Failed), or None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _cronjob_owned(meta: Mapping[str, Any]) -> bool:
    return any(ref.get("kind") == "CronJob" for ref in meta.get("ownerReferences") or ())


def find(inv: Inventory, options: DoctorOptions) -> Iterable[Finding]:
    if inv.jobs is None:
        return
    holders: dict[tuple[str, str], list[str]] = {}
    for p in inv.snapshot.pods:
        if p.phase in ("Running", "Pending"):
            for owner in p.owners:
                if owner.kind == "Job":
                    holders.setdefault((p.namespace, owner.name), []).append(p.name)
    for job in inv.jobs:
        meta, spec = job.get("metadata") or {}, job.get("spec") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        job_ref = Involved(kind="Job", name=name, namespace=ns)
        state = finished(job)
        pods = sorted(holders.get((ns, name), ()))
        if state and pods:
            detail = f"{state}, yet {len(pods)} pod(s) still hold GPUs: {', '.join(pods)}"
            yield finding(FINISHED_HOLDING, detail, job_ref, *(pod(ns, p) for p in pods))
        template = (spec.get("template") or {}).get("spec") or {}
        if spec.get("ttlSecondsAfterFinished") is None and not _cronjob_owned(meta) and pod_gpu_requests(template):
            yield finding(NO_TTL, f"{state or 'not finished yet'}; kept until someone deletes it", job_ref)
