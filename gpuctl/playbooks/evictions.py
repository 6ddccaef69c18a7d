"""Evicting planned pods through the Eviction API, within the run's deadline, never around a budget.

`evict_planned`, the one eviction loop of every playbook (reclaim-idle-gpus,
relabel-mig, scale-pool), sends one uid-pinned eviction per pod (policy/v1, as
the requester; a DELETE is never sent) and sorts the answers:

    evicted              done
    gone (404)           done: already gone
    precondition (409)   refused: another pod of that name replaced the planned one
    several PDBs (500)   refused: the Eviction API never evicts such a pod
    PDB refuses (429)    tried again with backoff until the deadline, then refused
    403 / other answers  refused / failed, with the API server's words

Every answer goes to `StepCalls` (the run's record and the step's outcome),
a refusal the ActingClient raises (403, unexpected codes) too: it carries its call.

`judge_trial` reads an eviction's dry run the same way for every plan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gpuctl.errors import ClusterError, Forbidden
from gpuctl.playbooks.acting import EvictionResult
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.logic import ExecContext, StepOutcome
from gpuctl.playbooks.plan import Step
from gpuctl.playbooks.stepkit import StepCalls

# kube-apiserver's cause for a refusing budget: "The disruption budget NAME needs N healthy pods and has M currently".
_BUDGET = re.compile(r"disruption budget (\S+) needs")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts on pods a budget refused: first_s, doubling up to max_s (or Retry-After if longer).

    The last attempt is made `last_try_s` before the deadline rather than not at all."""

    first_s: float = 10.0
    max_s: float = 60.0
    last_try_s: float = 1.0


def budget_named(result: EvictionResult, namespace: str, known: Sequence[str] = ()) -> str:
    """'PDB ns/name' for a 429, from the API server's cause or the budgets the snapshot knew; else a generic phrase."""
    found = _BUDGET.search(result.disruption_budget or "") or _BUDGET.search(result.message)
    if found:
        return f"PDB {namespace}/{found.group(1)}"
    if len(known) == 1:
        return f"PDB {namespace}/{known[0]}"
    return "a PodDisruptionBudget"


async def evict_planned(
    ctx: ExecContext, calls: StepCalls, evictions: Sequence[tuple[int, Step]], backoff: Backoff
) -> dict[int, StepOutcome]:
    """Evict each (step index, evict step) until it is out or refused for good; 429s are retried until the deadline."""
    outcomes: dict[int, StepOutcome] = {}
    waiting = list(evictions)
    attempts: defaultdict[int, int] = defaultdict(int)
    delay = backoff.first_s
    while waiting:
        refused: list[tuple[int, Step, str, int | None]] = []
        for index, step in waiting:
            pod = step.target
            key = f"{pod.namespace}/{pod.name}"
            attempts[index] += 1
            try:
                result = await ctx.clients.acting.evict(pod.namespace or "", pod.name, uid=pod.uid)
            except ClusterError as e:
                await calls.refused(e, index)
                outcomes[index] = calls.outcome(
                    index, "refused" if isinstance(e, Forbidden) else "failed", f"{key} not evicted: {e}"
                )
                continue
            await calls.record(result.call, index)
            if result.outcome == "evicted":
                outcomes[index] = calls.outcome(index, "done", f"evicted {key} ({step.gpus} GPUs)")
                await ctx.progress(f"evicted {key} ({step.gpus} GPUs)", step=index)
            elif result.outcome == "gone":
                outcomes[index] = calls.outcome(index, "done", f"{key} was already gone")
            elif result.outcome == "precondition_failed":
                message = f"{key} not evicted: another pod of that name replaced the planned one (uid {pod.uid})"
                outcomes[index] = calls.outcome(index, "refused", message)
            elif result.outcome == "multiple_pdbs":
                message = f"{key} not evicted: it is under several PodDisruptionBudgets, which the Eviction API refuses"
                outcomes[index] = calls.outcome(index, "refused", f"{message} ({result.message})")
            else:
                refused.append((index, step, budget_named(result, pod.namespace or ""), result.retry_after_s))
        if not refused:
            break
        wait_s = max([delay, *(float(r[3]) for r in refused if r[3])])
        wait_s = min(wait_s, (ctx.deadline - ctx.now()).total_seconds() - backoff.last_try_s)
        if not await _waited(ctx, wait_s, refused):
            for index, step, budget, _ in refused:
                key = f"{step.target.namespace}/{step.target.name}"
                message = (
                    f"{key} not evicted: {budget} still allowed no disruption at the run's deadline "
                    f"({attempts[index]} attempts); never bypassed"
                )
                outcomes[index] = calls.outcome(index, "refused", message)
            break
        waiting = [(index, step) for index, step, _, _ in refused]
        delay = min(delay * 2, backoff.max_s)
    return outcomes


async def _waited(ctx: ExecContext, wait_s: float, refused: Sequence[tuple[int, Step, str, int | None]]) -> bool:
    """Wait before the next attempt; False when the deadline leaves no time for one."""
    if wait_s <= 0:
        return False
    for index, step, budget, _ in refused:
        await ctx.progress(f"{budget} blocked {step.target.namespace}/{step.target.name}, retrying in {wait_s:.0f} s", step=index)
    try:
        await ctx.sleep(wait_s)
    except DeadlinePassed:
        return False
    return True


def judge_trial(result: EvictionResult, key: str, blocked: list[str], warnings: list[str]) -> None:
    """Add what an eviction's dry run of pod `key` means for the plan to `blocked` or `warnings` (nothing if it passed).

    A budget refusing now only warns: the run retries it until its deadline. A pod under several
    budgets, or replaced or gone while planning, blocks it."""
    if result.outcome == "pdb_refused":
        budget = result.disruption_budget or result.message
        warnings.append(f"{key}: a PodDisruptionBudget refuses its eviction now ({budget}); the run retries until its deadline")
    elif result.outcome == "multiple_pdbs":
        blocked.append(
            f"{key} is under several PodDisruptionBudgets: the Eviction API refuses it whatever they allow; fix the budgets first"
        )
    elif result.outcome != "evicted":
        blocked.append(f"{key} changed while planning ({result.message}): plan again")
