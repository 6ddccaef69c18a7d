"""Evicting planned pods through the Eviction API, within the run's deadline, never around a budget.

`evict_planned` sends one uid-pinned eviction per pod (policy/v1, as the
requester; a DELETE is never sent) and sorts the answers:

    evicted              done
    gone (404)           done: already gone
    precondition (409)   refused: another pod of that name replaced the planned one
    several PDBs (500)   refused: the Eviction API never evicts such a pod
    PDB refuses (429)    tried again with backoff until the deadline, then refused
    403 / other answers  refused / failed, with the API server's words

Every answer that comes back as a result goes to `StepCalls` (the run's record
and the step's outcome). A refusal the ActingClient raises (403, unexpected
codes) carries no ApiCall: its message goes into the outcome, and the KubeApi's
own `on_call` sink still sees the call.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gpuctl.errors import ClusterError, Forbidden
from gpuctl.playbooks.acting import EvictionResult
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.logic import ExecContext, StepOutcome
from gpuctl.playbooks.plan import Step

Status = Literal["done", "skipped", "refused", "failed"]
# kube-apiserver's cause for a refusing budget: "The disruption budget NAME needs N healthy pods and has M currently".
_BUDGET = re.compile(r"disruption budget (\S+) needs")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts on pods a budget refused: first_s, doubling up to max_s (or Retry-After if longer).

    The last attempt is made `last_try_s` before the deadline rather than not at all."""

    first_s: float = 10.0
    max_s: float = 60.0
    last_try_s: float = 1.0


class StepCalls:
    """Every API call of a run, recorded through the context as it happens and kept per step for its outcome."""

    def __init__(self, ctx: ExecContext) -> None:
        self.ctx = ctx
        self.by_step: defaultdict[int, list[ApiCall]] = defaultdict(list)

    async def record(self, call: ApiCall, step: int) -> None:
        self.by_step[step].append(call)
        await self.ctx.record(call, step=step)

    def outcome(self, step: int, status: Status, message: str) -> StepOutcome:
        return StepOutcome(index=step, status=status, message=message, calls=tuple(self.by_step[step]))


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
            except Forbidden as e:
                outcomes[index] = calls.outcome(index, "refused", f"{key} not evicted: {e}")
                continue
            except ClusterError as e:
                outcomes[index] = calls.outcome(index, "failed", f"{key} not evicted: {e}")
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
