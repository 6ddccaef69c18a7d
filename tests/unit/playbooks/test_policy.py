"""gpuctl's policy: who may run and approve what, where, with reasons a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.errors import ConfigError, PolicyDenied, PolicyError
from gpuctl.identity import Identity
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.policy import Policy, Scope, alert_rule, can_approve, decide, load_policy, may_act_as, may_view

EXAMPLE = Path(__file__).parents[3] / "deploy" / "policy.example.yaml"

POLICY = """\
roles:
  platform-admin:
    groups: [gpu-platform]
    run: ["*"]
    approve: ["*"]
    namespaces: ["*"]
    pools: ["*"]
    cluster_queues: ["*"]
  team-a-operator:
    groups: [team-a]
    run: [reclaim-idle-gpus, adjust-quota]
    namespaces: [team-a, "team-a-*"]
    cluster_queues: [team-a-cq]
  team-b-operator:
    groups: [team-b]
    run: [reclaim-idle-gpus, adjust-quota]
    namespaces: [team-b]
  pool-ops:
    users: [ops-1]
    run: ["scale-*", relabel-mig]
    pools: ["a100-*"]
  quota-approvers:
    users: [lead-a, user-a]
    approve: [adjust-quota]
    namespaces: ["team-*"]
unmapped: read_only
alerts:
  - playbook: reclaim-idle-gpus
    run_as: {user: gpuctl-alerts, groups: [team-a]}
    max_runs_per_hour: 2
"""

USER_A = Identity(user="user-a", groups=("team-a",))
USER_B = Identity(user="user-b", groups=("team-b",))
OPS = Identity(user="ops-1")
LEAD = Identity(user="lead-a")
ADMIN = Identity(user="root", groups=("gpu-platform", "system:authenticated"))
STRANGER = Identity(user="mallory", groups=("contractors",))


def ns(name: str) -> Scope:
    return Scope(kind="namespace", name=name)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return load_policy(path)


def test_the_issues_example_reason(policy: Policy) -> None:
    decision = decide(policy, USER_B, "adjust-quota", ns("team-a"))
    assert not decision.allowed and decision.role is None
    assert decision.reason == "user-b may not run adjust-quota on team-a: role team-b-operator covers team-b only"
    with pytest.raises(PolicyDenied, match="role team-b-operator covers team-b only"):
        decision.require()


def test_allowed_names_the_role(policy: Policy) -> None:
    decision = decide(policy, USER_B, "adjust-quota", ns("team-b"))
    assert (decision.allowed, decision.role) == (True, "team-b-operator")
    assert decision.reason == "user-b may run adjust-quota on team-b: role team-b-operator"
    decision.require()  # no error


@pytest.mark.parametrize(
    ("who", "playbook", "scope", "allowed", "reason"),
    [
        (USER_A, "reclaim-idle-gpus", ns("team-a-dev"), True, "role team-a-operator"),  # glob team-a-*
        (USER_A, "reclaim-idle-gpus", ns("team-ab"), False, "role team-a-operator covers team-a, team-a-* only"),
        (USER_A, "adjust-quota", Scope(kind="cluster_queue", name="team-a-cq"), True, "on cluster queue team-a-cq"),
        (USER_A, "adjust-quota", Scope(kind="cluster_queue", name="team-b-cq"), False,
         "user-a may not run adjust-quota on cluster queue team-b-cq: role team-a-operator covers cluster queues team-a-cq only"),
        (USER_B, "adjust-quota", Scope(kind="pool", name="a100-x"), False, "role team-b-operator covers no pools"),
        (USER_B, "scale-pool", Scope(kind="pool", name="a100-x"), False,
         "user-b may not run scale-pool: role team-b-operator runs reclaim-idle-gpus, adjust-quota"),
        (OPS, "scale-pool", Scope(kind="pool", name="a100-spot"), True, "role pool-ops"),  # by user name, glob playbook
        (OPS, "scale-pool", Scope(kind="pool", name="h100-spot"), False, "role pool-ops covers pools a100-* only"),
        (OPS, "adjust-quota", ns("team-a"), False, "role pool-ops runs scale-*, relabel-mig"),
        (ADMIN, "relabel-mig", Scope(kind="pool", name="anything"), True, "role platform-admin"),
        (STRANGER, "reclaim-idle-gpus", ns("team-a"), False,
         "mallory may not run reclaim-idle-gpus: mallory (groups contractors) holds no role"),
        (LEAD, "adjust-quota", ns("team-a"), False, "role quota-approvers runs no playbooks"),
    ],
)  # fmt: skip
def test_decisions(policy: Policy, who: Identity, playbook: str, scope: Scope, allowed: bool, reason: str) -> None:
    decision = decide(policy, who, playbook, scope)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_groups_and_users_both_grant(policy: Policy) -> None:
    # user-a holds team-a-operator through the group and quota-approvers by name.
    assert [name for name, _ in policy.held_roles(USER_A)] == ["team-a-operator", "quota-approvers"]
    assert policy.held_roles(Identity(user="user-a")) == [("quota-approvers", policy.roles["quota-approvers"])]


def test_scope_none_means_anywhere(policy: Policy) -> None:
    assert decide(policy, USER_A, "adjust-quota", None).allowed
    assert not decide(policy, USER_A, "scale-pool", None).allowed


def test_approver_is_never_the_requester(policy: Policy) -> None:
    own = can_approve(policy, USER_A, USER_A, "adjust-quota", ns("team-a"))
    assert not own.allowed
    assert own.reason.startswith("user-a may not approve their own run of adjust-quota: the approver must be someone else")
    assert "ask someone holding roles platform-admin, quota-approvers" in own.reason
    # Same user with different groups is still the same person.
    assert not can_approve(policy, Identity(user="user-a"), USER_A, "adjust-quota", ns("team-a")).allowed


def test_approvals(policy: Policy) -> None:
    decision = can_approve(policy, LEAD, USER_A, "adjust-quota", ns("team-a"))
    assert (decision.allowed, decision.role) == (True, "quota-approvers")
    out_of_scope = can_approve(policy, LEAD, USER_A, "adjust-quota", ns("prod"))
    assert not out_of_scope.allowed
    assert out_of_scope.reason == (
        "lead-a may not approve adjust-quota on prod: role quota-approvers covers team-* only; "
        "ask someone holding role platform-admin"
    )
    other_playbook = can_approve(policy, LEAD, USER_A, "scale-pool", Scope(kind="pool", name="a100-1"))
    assert "role quota-approvers approves adjust-quota" in other_playbook.reason
    runner_only = can_approve(policy, USER_B, USER_A, "adjust-quota", ns("team-b"))
    assert "role team-b-operator approves no playbooks" in runner_only.reason
    assert can_approve(policy, ADMIN, USER_A, "relabel-mig", Scope(kind="pool", name="p")).role == "platform-admin"
    nobody = can_approve(policy, STRANGER, USER_A, "adjust-quota", ns("team-a"))
    assert "mallory (groups contractors) holds no role" in nobody.reason


def test_requester_may_approve_cannot_be_switched_on(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("roles: {}\nrequester_may_approve: true\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (2, "requester_may_approve") and "False" in problem.message


def test_viewing(policy: Policy) -> None:
    assert may_view(policy, USER_B).allowed
    assert may_view(policy, STRANGER).allowed  # unmapped: read_only
    assert not may_view(Policy(), STRANGER).allowed


def test_no_policy_means_nobody_acts() -> None:
    default = load_policy(None)
    assert default == Policy() and default.unmapped == "none" and not default.alerts
    decision = decide(default, ADMIN, "reclaim-idle-gpus", ns("team-a"))
    assert not decision.allowed and "no gpuctl policy grants any role" in decision.reason
    assert not can_approve(default, ADMIN, USER_A, "adjust-quota", ns("team-a")).allowed
    assert alert_rule(default, "reclaim-idle-gpus") is None


def test_alert_rules(policy: Policy) -> None:
    rule = alert_rule(policy, "reclaim-idle-gpus")
    assert rule is not None and rule.max_runs_per_hour == 2 and rule.run_as.user == "gpuctl-alerts"
    assert decide(policy, rule.run_as, "reclaim-idle-gpus", ns("team-a")).allowed
    assert alert_rule(policy, "scale-pool") is None


@pytest.mark.parametrize(
    ("text", "line", "field", "says"),
    [
        ("roles:\n  Bad_Name: {}\n", 2, "roles.Bad_Name", "should match pattern"),
        ("roles:\n  r:\n    run: [x]\n    namespace: [a]\n", 4, "roles.r.namespace", "unknown field"),
        ("unmapped: everyone\n", 1, "unmapped", "'read_only' or 'none'"),
        ("alerts:\n  - playbook: scale-pool\n    run_as: {user: a}\n    max_runs_per_hour: 0\n", 4,
         "alerts[0].max_runs_per_hour", "greater than or equal to 1"),
        ("roles: {}\nalerts:\n  - playbook: scale-pool\n    run_as: {user: nobody}\n    max_runs_per_hour: 1\n", 2, "alerts",
         "scale-pool runs as nobody, who holds no role that may run it"),
        ("roles:\n  r:\n    run: ['team a']\n", 3, "roles.r.run[0]", "should match pattern"),
    ],
)  # fmt: skip
def test_bad_policy_files_name_line_and_field(tmp_path: Path, text: str, line: int, field: str, says: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert isinstance(err.value, ConfigError)
    problem = err.value.problems[0]
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert says in problem.message


def test_unknown_playbooks_in_a_policy_are_errors(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("run: [reclaim-idle-gpus, adjust-quota]\n    namespaces: [team-b]",
                                   "run: [reclaim-idle-gpu, adjust-quota]\n    namespaces: [team-b]"))  # fmt: skip
    with pytest.raises(PolicyError) as err:
        load_policy(path, playbooks=[p.name for p in catalog])
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (16, "roles.team-b-operator.run[0]")
    assert "'reclaim-idle-gpu' matches no playbook (known: adjust-quota," in problem.message


def test_unreadable_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_example_policy_is_valid(catalog: Catalog) -> None:
    example = load_policy(EXAMPLE, playbooks=[p.name for p in catalog])
    assert decide(example, USER_B, "adjust-quota", ns("team-a")).reason == (
        "user-b may not run adjust-quota on team-a: role team-b-operator covers team-b only"
    )
    assert example.unmapped == "read_only" and alert_rule(example, "reclaim-idle-gpus") is not None


ACTING = """\
roles:
  platform:
    users: [root]
    act_as: {users: ["user-*"], groups: ["team-*"]}
  team-a-operator:
    groups: [team-a]
    run: [adjust-quota]
    namespaces: [team-a]
"""


def test_acting_for_others_needs_a_role_covering_the_user_and_every_group(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(ACTING)
    policy = load_policy(path)
    root = Identity(user="root")
    assert may_act_as(policy, root, USER_A).allowed
    assert may_act_as(policy, root, Identity(user="user-b")).allowed  # no groups: nothing more to cover
    escalate = may_act_as(policy, root, Identity(user="user-a", groups=("team-a", "system:masters")))
    assert not escalate.allowed
    assert escalate.reason == "root may not act as user-a (team-a, system:masters): role platform acts as users user-*, groups team-*"
    assert not may_act_as(policy, root, Identity(user="alice")).allowed
    assert may_act_as(policy, USER_A, USER_A).allowed  # yourself, always
    denied = may_act_as(policy, USER_A, USER_B)
    assert denied.reason == "user-a may not act as user-b (team-b): role team-a-operator acts as users none, groups none"
    assert may_act_as(policy, STRANGER, USER_A).reason.startswith("mallory may not act as user-a: mallory (groups contractors) holds no role")
    with pytest.raises(PolicyDenied):
        may_act_as(policy, STRANGER, USER_A).require()
