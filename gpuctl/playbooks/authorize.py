"""Authorize twice: gpuctl's policy, then the cluster's RBAC, before anything is written.

1. The plan must be one the playbook may produce: every step's action is one
   the definition declares, its guardrails hold (`guardrail_breaches`), and every
   namespace a namespaced step touches is among the policy scopes it names
   (`check_plan`), so a plan cannot slip a namespace past the policy.
2. gpuctl's policy (policy.decide) for every scope of the plan: a denial names
   the user, the playbook, the scope and the role that fell short.
3. The cluster's RBAC, asked AS the requester (SelfSubjectAccessReview through
   impersonation) for every write the steps' actions perform, in every
   namespace they touch (cluster-wide for cluster-scoped objects). A denial is
   a Forbidden saying who may not do what where.

Approving is authorized the same way (`authorize_approval`): never the
requester, policy.can_approve for every scope, and the `approve` verb on the
PlaybookRun. All of it happens again right before execution, since roles and
bindings may change while a run waits for its approval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict

from gpuctl.errors import Forbidden, RunRefused
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import AccessReview, ActingClient
from gpuctl.playbooks.params import Arguments
from gpuctl.playbooks.plan import Plan, Step
from gpuctl.playbooks.policy import Decision, Policy, Scope, can_approve, decide
from gpuctl.playbooks.runs import PlaybookRun, review_approval
from gpuctl.playbooks.spec import ACTIONS, Action, Permission, Playbook, PodListParam


class Authorization(BaseModel):
    """Why a request was allowed: the policy's decisions and the cluster's answers (for the audit log)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: tuple[str, ...]
    reviews: tuple[str, ...]

    @classmethod
    def of(cls, decisions: Iterable[Decision], reviews: Iterable[AccessReview]) -> Authorization:
        return cls(policy=tuple(d.reason for d in decisions), reviews=tuple(r.explain() for r in reviews))


def guardrail_breaches(steps: Sequence[Step], playbook: Playbook) -> list[str]:
    """The playbook's numeric guardrails a set of steps would break (the engine blocks such a plan)."""
    rails = playbook.guardrails
    breaches = []
    gpus = sum(step.gpus for step in steps)
    if rails.max_gpus is not None and gpus > rails.max_gpus:
        breaches.append(f"the plan affects {gpus} GPUs; guardrail max_gpus is {rails.max_gpus}")
    pods = {s.target.key for s in steps if s.action == Action.evict_pods}
    if rails.max_pods is not None and len(pods) > rails.max_pods:
        breaches.append(f"the plan evicts {len(pods)} pods; guardrail max_pods is {rails.max_pods}")
    nodes = {s.target.key for s in steps if s.target.kind == "Node"}
    if rails.max_nodes is not None and len(nodes) > rails.max_nodes:
        breaches.append(f"the plan changes {len(nodes)} nodes; guardrail max_nodes is {rails.max_nodes}")
    return breaches


def check_plan(plan: Plan, playbook: Playbook) -> None:
    """RunRefused unless the plan is one this playbook may carry out (actions, scopes, guardrails)."""
    declared = {action.value for action in playbook.actions}
    for index, step in enumerate(plan.steps):
        if step.action not in declared:
            raise RunRefused(
                f"step {index + 1} of the {plan.playbook} plan is {step.action!r}, an action {playbook.name} does not "
                f"declare (it declares {', '.join(sorted(declared))})",
                hint="a playbook acts only through the actions its definition lists",
            )
    if plan.steps and not plan.scopes:
        raise RunRefused(f"the {plan.playbook} plan names no policy scope, so nobody could authorize it")
    if "namespace" in playbook.target.scopes:
        named = {scope.name for scope in plan.scopes if scope.kind == "namespace"}
        loose = sorted({s.target.namespace for s in plan.steps if s.target.namespace and s.target.namespace not in named})
        if loose:
            raise RunRefused(f"the {plan.playbook} plan acts in namespace(s) {', '.join(loose)} without naming them as scopes")
    breaches = guardrail_breaches(plan.steps, playbook)
    if breaches:
        raise RunRefused(f"the {plan.playbook} plan breaks its guardrails: {'; '.join(breaches)}")


def writes(plan: Plan) -> list[tuple[Permission, str | None]]:
    """Each write the plan's actions perform, once per namespace it happens in (None: cluster-scoped)."""
    needed: dict[tuple[Permission, str | None], None] = {}
    for step in plan.steps:
        for permission in ACTIONS[Action(step.action)][1]:
            needed[(permission, step.target.namespace if permission.namespaced else None)] = None
    return list(needed)


async def review_writes(acting: ActingClient, plan: Plan) -> list[AccessReview]:
    """The cluster's answer, as the acting identity, for every write the plan performs."""
    return list(
        await asyncio.gather(
            *(
                acting.can_i(p.verb, p.resource, namespace=ns, subresource=p.subresource or "", group=p.group)
                for p, ns in writes(plan)
            )
        )
    )


async def authorize(policy: Policy, playbook: Playbook, plan: Plan, acting: ActingClient) -> Authorization:
    """Policy for every scope, then RBAC as the requester; PolicyDenied or Forbidden with the reason."""
    check_plan(plan, playbook)
    who = plan.requester.identity
    decisions = [decide(policy, who, playbook.name, scope) for scope in plan.scopes]
    for decision in decisions:
        decision.require()
    reviews = await review_writes(acting, plan)
    refused = [review for review in reviews if not review.allowed]
    if refused:
        raise Forbidden(
            "; ".join(review.explain() for review in refused),
            reason="Forbidden",
            hint=f"the cluster's RBAC decides; ask an admin for a Role that grants it (nothing of {plan.playbook} was done)",
        )
    return Authorization.of(decisions, reviews)


def param_scopes(playbook: Playbook, args: Arguments) -> list[Scope]:
    """The scopes the parameters name outright (a namespace, a pool): checkable before anything is read."""
    kinds = {"namespace": "namespace", "pool": "pool"}
    scopes = []
    for name in playbook.target.by:
        param, value = playbook.parameters[name], args.get(name)
        kind = kinds.get(param.type)
        if kind in playbook.target.scopes and isinstance(value, str):
            scopes.append(Scope(kind=kind, name=value))
        elif isinstance(param, PodListParam) and "namespace" in playbook.target.scopes and isinstance(value, str):
            scopes += [Scope(kind="namespace", name=ns) for ns in _namespaces_of(param, value)]
    return scopes


def _namespaces_of(param: PodListParam, value: str) -> tuple[str, ...]:
    """The namespaces a pods value names; none for text that is not one (it was never validated: the plan says)."""
    try:
        return param.namespaces(value)
    except ValueError:
        return ()


def may_plan(policy: Policy, identity: Identity, playbook: Playbook, args: Arguments) -> None:
    """PolicyDenied before any work: no role lets `identity` run `playbook` anywhere, or in a scope the
    parameters name (the plan's own scopes are checked once it is computed)."""
    decide(policy, identity, playbook.name, None).require()
    for scope in param_scopes(playbook, args):
        decide(policy, identity, playbook.name, scope).require()


async def authorize_approval(
    policy: Policy, approver: ActingClient, who: Identity, run: PlaybookRun, plan: Plan
) -> Authorization:
    """May `who` approve (or deny) this run? Never their own; policy for every scope; the `approve` verb."""
    requester = plan.requester.identity
    decisions = [can_approve(policy, who, requester, plan.playbook, scope) for scope in plan.scopes]
    if not decisions:
        decisions = [Decision(allowed=False, reason=f"the {plan.playbook} plan names no scope anyone could approve in")]
    for decision in decisions:
        decision.require()
    review = await review_approval(approver, run)
    if not review.allowed:
        raise Forbidden(
            review.explain(),
            reason="Forbidden",
            hint="approvers need the `approve` verb on playbookruns (ClusterRole gpuctl:playbookrun-approver)",
        )
    return Authorization.of(decisions, [review])


def approvers(policy: Policy, playbook: str, scopes: Sequence[Scope]) -> list[str]:
    """Who may approve a run of `playbook` touching `scopes`, as 'role R (user u, group g)', for messages."""
    out = []
    for name, role in policy.roles.items():
        if scopes and any(fnmatchcase(playbook, glob) for glob in role.approve) and all(role.covers(s) for s in scopes):
            members = [*(f"user {u}" for u in role.users), *(f"group {g}" for g in role.groups)]
            out.append(f"role {name} ({', '.join(members) or 'nobody holds it'})")
    return out
