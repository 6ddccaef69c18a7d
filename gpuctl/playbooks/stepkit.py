"""What playbook logic modules share when they plan and execute steps.

- `dry_run`: a server-side dry run as the requester, whose refusal becomes a
  reason the plan is blocked (the cluster's RBAC and admission have their say
  before anyone approves).
- `StepCalls`: every call of a run's steps recorded as it happens (a refused
  request too: the error carries its call) and kept per step for its outcome.
- `run_steps`: the plan's steps in order, each by a playbook's own handler;
  every call recorded; a refusal answer mapped to the step's outcome; after a
  step that did not complete, the rest are skipped, never half-run on top.
- `wait_until`: bounded waiting for a controller to catch up, with the run's
  deadline-aware sleep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

from gpuctl.errors import ApiRejected, ClusterError, Conflict, Forbidden, NotFound
from gpuctl.playbooks.acting import ObjectResult
from gpuctl.playbooks.context import DeadlinePassed
from gpuctl.playbooks.kubeapi import JSON, ApiCall
from gpuctl.playbooks.logic import ExecContext, Report, StepOutcome
from gpuctl.playbooks.plan import Plan, Step

T = TypeVar("T")
Status = Literal["done", "skipped", "refused", "failed"]


class _HasCall(Protocol):
    @property
    def call(self) -> ApiCall: ...


R = TypeVar("R", bound=_HasCall)


def changed_since_plan(step: Step, obj: JSON, current: object) -> str | None:
    """Why the step's target no longer is what the plan saw: replaced (another uid), or its field is
    `current`, neither the plan's before nor its after. None when the step may still run."""
    what = f"{step.target.kind} {step.target.key.split('/', 1)[1]}"
    if step.target.uid and (obj.get("metadata") or {}).get("uid") != step.target.uid:
        return f"{what} was deleted and created again since the plan"
    change = step.changes[0]
    if current is None and change.before is not None and change.after is not None:
        return f"{what} no longer has {change.field}"
    if current not in (change.before, change.after):
        return f"{what}: {change.field} is {current} now, the plan saw {change.before}"
    return None


async def dry_run(blocked: list[str], attempt: Awaitable[R], what: str | None = None) -> R | None:
    """The dry run's result, or None with the reason the API server refused it (after `what`, if given) added to `blocked`."""
    prefix = f"{what}: " if what else ""
    try:
        return await attempt
    except Forbidden as e:
        blocked.append(f"{prefix}the cluster refuses it: {e.message}")
    except Conflict:
        blocked.append(f"{prefix}the target changed while the plan was made: plan again")
    except (NotFound, ApiRejected) as e:
        blocked.append(f"{prefix}the API server refused the dry run: {e.message}")
    return None


class StepCalls:
    """The calls a run's steps make: each recorded through the context as it happens, and kept per step for its outcome.

    `index` is the step `record` and `track` mean when told none (run_steps makes one per step)."""

    def __init__(self, ctx: ExecContext, index: int = 0) -> None:
        self.ctx = ctx
        self.index = index
        self.by_step: defaultdict[int, list[ApiCall]] = defaultdict(list)

    async def record(self, call: ApiCall, step: int | None = None) -> None:
        step = self.index if step is None else step
        self.by_step[step].append(call)
        await self.ctx.record(call, step=step)

    async def track(self, request: Awaitable[R], step: int | None = None) -> R:
        """The request's result, its call recorded; a refusal's call is recorded before the error propagates."""
        try:
            result = await request
        except ClusterError as e:
            await self.refused(e, step)
            raise
        await self.record(result.call, step)
        return result

    async def refused(self, error: ClusterError, step: int | None = None) -> None:
        """Record the call an error answer carries, once (none when the API server never answered)."""
        step = self.index if step is None else step
        if error.call is not None and all(call is not error.call for call in self.by_step[step]):
            await self.record(error.call, step)

    def outcome(self, step: int, status: Status, message: str) -> StepOutcome:
        return StepOutcome(index=step, status=status, message=message, calls=tuple(self.by_step[step]))


class StepDone(Exception):
    """Raised by a handler to end its step early with an outcome other than done (e.g. skipped: already so)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status: Status = status
        self.message = message


Handler = Callable[[Step, StepCalls], Awaitable[str]]
# Writes on a just-read version that meet a Conflict before one lands: controllers write status
# all the time (the quota controller, Karpenter), which moves the version but not what the plan set.
WRITE_ATTEMPTS = 3


async def write_on_fresh(
    calls: StepCalls,
    read: Callable[[], Awaitable[ObjectResult]],
    check: Callable[[ObjectResult], None],
    write: Callable[[ObjectResult], Awaitable[R]],
    *,
    attempts: int = WRITE_ATTEMPTS,
    step: int | None = None,
) -> R:
    """Read, `check` the plan still holds (it raises StepDone, or another error, otherwise), write on exactly that version.

    A Conflict means something wrote in between: read and check again, so a change that matters
    refuses the step and one that does not (a status update) does not fail it; after
    `attempts` conflicts the Conflict stands. Every call is recorded (for `step`, default the
    calls' own), the refused ones too."""
    for attempt in range(1, attempts + 1):
        fresh = await calls.track(read(), step)
        check(fresh)
        try:
            return await calls.track(write(fresh), step)
        except Conflict:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _refusal(error: ClusterError) -> tuple[Status, str]:
    if isinstance(error, Forbidden):
        return "refused", f"the cluster refused it: {error.message}"
    if isinstance(error, Conflict):
        return "refused", f"it changed since it was read (Conflict): {error.message}"
    if isinstance(error, NotFound):
        return "refused", f"it is gone: {error.message}"
    return "failed", str(error)


async def run_steps(plan: Plan, ctx: ExecContext, handler: Handler) -> Report:
    """Each step through `handler` (which returns the done message or raises StepDone / a ClusterError)."""
    outcomes: list[StepOutcome] = []
    stopped: int | None = None
    for index, step in enumerate(plan.steps):
        if stopped is not None:
            outcomes.append(StepOutcome(index=index, status="skipped", message=f"not run: step {stopped + 1} did not complete"))
            continue
        calls = StepCalls(ctx, index)
        status: Status
        try:
            message = await handler(step, calls)
            status = "done"
        except StepDone as e:
            status, message = e.status, e.message
        except DeadlinePassed as e:
            status, message = "refused", str(e)
        except ClusterError as e:
            await calls.refused(e)
            status, message = _refusal(e)
        await ctx.progress(f"{step.action} {step.target.key}: {status}: {message}", step=index)
        outcomes.append(calls.outcome(index, status, message))
        if status in ("refused", "failed"):
            stopped = index
    done = sum(o.status == "done" for o in outcomes)
    summary = f"{done} of {len(outcomes)} steps done"
    if stopped is not None:
        summary += f"; step {stopped + 1} {outcomes[stopped].status}: {outcomes[stopped].message}"
    return Report(outcomes=tuple(outcomes), message=summary)


async def wait_until(
    ctx: ExecContext,
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float,
) -> tuple[bool, T]:
    """Probe until `done` holds, `timeout_s` passes or the run's deadline comes: (whether it held, the last value)."""
    started = ctx.now()
    while True:
        value = await probe()
        if done(value):
            return True, value
        if (ctx.now() - started).total_seconds() + interval_s > timeout_s:
            return False, value
        try:
            await ctx.sleep(interval_s)
        except DeadlinePassed:
            return False, value
