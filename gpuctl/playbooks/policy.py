"""gpuctl's policy: which people may run and approve which playbooks, where. The first of two authorizations.

The policy file (YAML, the `policy` setting) maps roles to playbooks and
scopes, and says who holds each role by Kubernetes user and group names, the
same names RBAC uses. The cluster's RBAC is the second authorization: every
write is performed as the requester through impersonation, so the policy can
only narrow what someone may do, never widen it.

    roles:
      team-a-operator:
        users: [alice]
        groups: [team-a]
        run: [reclaim-idle-gpus, adjust-quota]   # playbook names or globs
        approve: []                              # playbooks whose runs they may approve
        namespaces: [team-a, "team-a-*"]         # scopes, globs allowed
        pools: []
        cluster_queues: []
        act_as: {users: [], groups: []}          # whom holders may act for (`--as`, `--as-group`)
    unmapped: read_only        # users holding no role: read_only (view status and runs) or none
    requester_may_approve: false   # the only value: an approver is never the requester
    alerts:
      - playbook: reclaim-idle-gpus
        run_as: {user: gpuctl-alerts, groups: [gpu-remediation]}
        max_runs_per_hour: 2

Without a policy file nobody may run or approve anything and unmapped users
see nothing: a remediation tool must be switched on deliberately, and "the
cluster's RBAC alone" would let every user with write rights fire playbooks
from Slack or alerts before anyone decided they should.

Acting for someone else (`gpuctl playbook ... --as USER --as-group G`) needs a
role whose `act_as` matches that user and every one of those groups: the run
is then authorized, approved and performed as that identity, and the audit
log names the caller too. (The cluster must also let the caller impersonate.)

`decide`, `can_approve` and `may_act_as` return a Decision whose reason a person can act on
("user-b may not run adjust-quota on team-a: role team-b-operator covers
team-b only"); `Decision.require()` raises PolicyDenied with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictInt, StringConstraints, ValidationInfo, field_validator

from gpuctl.errors import FileProblem, PolicyDenied, PolicyError
from gpuctl.identity import Identity
from gpuctl.model import Frozen
from gpuctl.playbooks import marked
from gpuctl.playbooks.spec import DNS_LABEL, Glob, PlaybookName, ScopeKind

RoleName = Annotated[str, StringConstraints(pattern=rf"^{DNS_LABEL}$", max_length=63)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class ActAs(Frozen):
    """Whom a role's holders may act for: user names and groups (globs, matched exactly otherwise)."""

    users: tuple[Subject, ...] = ()
    groups: tuple[Subject, ...] = ()


class Role(Frozen):
    description: str = ""
    users: tuple[Subject, ...] = Field((), description="Kubernetes user names holding this role (exact)")
    groups: tuple[Subject, ...] = Field((), description="Kubernetes groups whose members hold this role (exact)")
    run: tuple[Glob, ...] = Field((), description="playbooks this role may run (names or globs)")
    approve: tuple[Glob, ...] = Field((), description="playbooks whose runs by others this role may approve")
    namespaces: tuple[Glob, ...] = ()
    pools: tuple[Glob, ...] = ()
    cluster_queues: tuple[Glob, ...] = ()
    act_as: ActAs = Field(ActAs(), description="whom holders may act for with --as/--as-group (users, groups)")

    def holds(self, identity: Identity) -> bool:
        return identity.user in self.users or not set(identity.groups).isdisjoint(self.groups)

    def covers(self, scope: Scope) -> bool:
        return _matches(scope.name, self.scope_globs(scope.kind))

    def scope_globs(self, kind: ScopeKind) -> tuple[str, ...]:
        return {"namespace": self.namespaces, "pool": self.pools, "cluster_queue": self.cluster_queues}[kind]


class AlertRule(Frozen):
    """A playbook alerts may start on their own, as whom, and how often."""

    playbook: PlaybookName
    run_as: Identity = Field(description="the identity alert-started runs are authorized and performed as")
    max_runs_per_hour: StrictInt = Field(
        ge=1, le=60, description="auto runs of the playbook alerts may start in any sliding hour (then they are proposed)"
    )


class Policy(Frozen):
    roles: dict[RoleName, Role] = Field(default_factory=dict)
    unmapped: Literal["read_only", "none"] = Field("none", description="what users holding no role may do")
    requester_may_approve: Literal[False] = Field(
        False, description="always false: the engine refuses an approval by the requester; written down to be explicit"
    )
    alerts: tuple[AlertRule, ...] = ()

    @field_validator("alerts")
    @classmethod
    def _alerts_runnable(cls, alerts: tuple[AlertRule, ...], info: ValidationInfo) -> tuple[AlertRule, ...]:
        if "roles" not in info.data:
            return alerts  # the roles' own errors are reported
        roles: dict[str, Role] = info.data["roles"]
        seen: set[str] = set()
        for rule in alerts:
            if rule.playbook in seen:
                raise ValueError(f"{rule.playbook} has two rules")
            seen.add(rule.playbook)
            if not any(role.holds(rule.run_as) and _matches(rule.playbook, role.run) for role in roles.values()):
                raise ValueError(f"{rule.playbook} runs as {rule.run_as.user}, who holds no role that may run it")
        return alerts

    def held_roles(self, identity: Identity) -> list[tuple[str, Role]]:
        """(name, role) of every role `identity` holds, in file order."""
        return [(name, role) for name, role in self.roles.items() if role.holds(identity)]


class Scope(Frozen):
    """Where a playbook acts: a namespace, a pool (a node counts as its pool) or a Kueue ClusterQueue."""

    kind: ScopeKind
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return self.name if self.kind == "namespace" else f"{_KIND_WORD[self.kind]} {self.name}"


_KIND_WORD = {"namespace": "namespace", "pool": "pool", "cluster_queue": "cluster queue"}
_KIND_PLURAL = {"namespace": "namespaces", "pool": "pools", "cluster_queue": "cluster queues"}


class Decision(Frozen):
    allowed: bool
    reason: str
    role: str | None = None

    def require(self) -> None:
        """Raise PolicyDenied with the reason unless allowed."""
        if not self.allowed:
            raise PolicyDenied(self.reason)


def _matches(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items)


def _roles_phrase(names: Sequence[str]) -> str:
    return f"role{'s' if len(names) > 1 else ''} {_listed(names)}"


def _no_role(policy: Policy, identity: Identity, verb: str, playbook: str) -> Decision:
    if not policy.roles:
        return Decision(allowed=False, reason=f"{identity.user} may not {verb} {playbook}: no gpuctl policy grants any role "
                        "(set the policy setting or GPUCTL_POLICY to a policy file)")  # fmt: skip
    groups = f"groups {_listed(identity.groups)}" if identity.groups else "no groups"
    return Decision(allowed=False, reason=f"{identity.user} may not {verb} {playbook}: {identity.user} ({groups}) holds no role")


def _out_of_scope(candidates: Sequence[tuple[str, Role]], scope: Scope) -> str:
    parts = []
    for name, role in candidates:
        globs = role.scope_globs(scope.kind)
        covered = f"{_listed(globs)} only" if globs else f"no {_KIND_PLURAL[scope.kind]}"
        if scope.kind != "namespace" and globs:
            covered = f"{_KIND_PLURAL[scope.kind]} {covered}"
        parts.append(f"role {name} covers {covered}")
    return "; ".join(parts)


def decide(policy: Policy, identity: Identity, playbook: str, scope: Scope | None) -> Decision:
    """May `identity` run `playbook` in `scope`? With scope None: anywhere at all (e.g. to offer it in a menu)."""
    held = policy.held_roles(identity)
    if not held:
        return _no_role(policy, identity, "run", playbook)
    runners = [(name, role) for name, role in held if _matches(playbook, role.run)]
    if not runners:
        what = "; ".join(f"role {n} runs {_listed(r.run) or 'no playbooks'}" for n, r in held)
        return Decision(allowed=False, reason=f"{identity.user} may not run {playbook}: {what}")
    where = "" if scope is None else f" on {scope}"
    for name, role in runners:
        if scope is None or role.covers(scope):
            return Decision(allowed=True, reason=f"{identity.user} may run {playbook}{where}: role {name}", role=name)
    assert scope is not None
    return Decision(allowed=False, reason=f"{identity.user} may not run {playbook}{where}: {_out_of_scope(runners, scope)}")


def can_approve(policy: Policy, approver: Identity, requester: Identity, playbook: str, scope: Scope) -> Decision:
    """May `approver` approve `requester`'s run of `playbook` in `scope`? Never their own run."""
    could = [name for name, role in policy.roles.items() if _matches(playbook, role.approve) and role.covers(scope)]
    ask = f"; ask someone holding {_roles_phrase(could)}" if could else f"; no role may approve {playbook} on {scope}"
    if approver.user == requester.user:
        return Decision(
            allowed=False, reason=f"{approver.user} may not approve their own run of {playbook}: the approver must be "
            f"someone else{ask}",
        )  # fmt: skip
    held = policy.held_roles(approver)
    if not held:
        denied = _no_role(policy, approver, "approve", playbook)
        return Decision(allowed=False, reason=denied.reason + ask)
    approvers = [(name, role) for name, role in held if _matches(playbook, role.approve)]
    if not approvers:
        what = "; ".join(f"role {n} approves {_listed(r.approve) or 'no playbooks'}" for n, r in held)
        return Decision(allowed=False, reason=f"{approver.user} may not approve {playbook}: {what}{ask}")
    for name, role in approvers:
        if role.covers(scope):
            return Decision(allowed=True, reason=f"{approver.user} may approve {playbook} on {scope}: role {name}", role=name)
    return Decision(
        allowed=False, reason=f"{approver.user} may not approve {playbook} on {scope}: {_out_of_scope(approvers, scope)}{ask}"
    )


def may_act_as(policy: Policy, caller: Identity, target: Identity) -> Decision:
    """May `caller` act for `target` (its user and every one of its groups)? Acting as oneself always may."""
    if caller == target:
        return Decision(allowed=True, reason=f"{caller.user} acts as themselves")
    held = policy.held_roles(caller)
    if not held:
        return Decision(allowed=False, reason=_no_role(policy, caller, "act as", target.user).reason)
    for name, role in held:
        if _matches(target.user, role.act_as.users) and all(_matches(g, role.act_as.groups) for g in target.groups):
            return Decision(allowed=True, reason=f"{caller.user} may act as {target}: role {name}", role=name)
    what = "; ".join(
        f"role {n} acts as users {_listed(r.act_as.users) or 'none'}, groups {_listed(r.act_as.groups) or 'none'}"
        for n, r in held
    )
    return Decision(allowed=False, reason=f"{caller.user} may not act as {target}: {what}")


def may_view(policy: Policy, identity: Identity) -> Decision:
    """May `identity` see status, playbooks and runs (read only)? Role holders may; others as `unmapped` says."""
    held = policy.held_roles(identity)
    if held:
        return Decision(allowed=True, reason=f"{identity.user} holds role {held[0][0]}", role=held[0][0])
    if policy.unmapped == "read_only":
        return Decision(allowed=True, reason=f"{identity.user} holds no role; the policy lets unmapped users view")
    return Decision(allowed=False, reason=f"{identity.user} holds no gpuctl role and the policy lets unmapped users see nothing")


def alert_rule(policy: Policy, playbook: str) -> AlertRule | None:
    """The rule that lets alerts start `playbook` on their own, if any."""
    return next((rule for rule in policy.alerts if rule.playbook == playbook), None)


def load_policy(path: Path | None, *, playbooks: Iterable[str] | None = None) -> Policy:
    """The policy in `path` (the default, empty policy when None); PolicyError naming file, line and field.

    With `playbooks` (the catalog's names), a role or alert naming a playbook
    that does not exist is an error too (a typo would otherwise deny quietly).
    """
    if path is None:
        return Policy()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"cannot read policy file {source}: {e.strerror or e}", hint="fix the policy setting") from e
    try:
        doc = marked.read(text, source)
        policy = marked.validate(Policy, doc, source)
    except marked.ProblemsFound as e:
        marked.raise_as(PolicyError, f"invalid policy {source}", e.problems)
    if playbooks is not None:
        known = set(playbooks)
        problems = []
        for name, role in policy.roles.items():
            for field in ("run", "approve"):
                for index, glob in enumerate(getattr(role, field)):
                    if not any(_matches(k, [glob]) for k in known):
                        line = doc.lines.get(("roles", name, field, index), 1)
                        known_list = _listed(sorted(known))
                        message = f"{glob!r} matches no playbook (known: {known_list})"
                        problems.append(FileProblem(source, line, f"roles.{name}.{field}[{index}]", message))
        for index, rule in enumerate(policy.alerts):
            if rule.playbook not in known:
                line = doc.lines.get(("alerts", index, "playbook"), 1)
                problems.append(FileProblem(source, line, f"alerts[{index}].playbook", f"no playbook {rule.playbook!r}"))
        if problems:
            marked.raise_as(PolicyError, f"invalid policy {source}", problems)
    return policy
