"""Who a request to the simulated API acts as, and what the demo's RBAC lets them do.

The demo's own connection acts as `DEMO_USER` (as a laptop kubeconfig would)
and may impersonate anyone. Everyone may read. Writing (and a
SelfSubjectAccessReview's "allowed") is for the connection's own identity and
for the users and groups the policy in force names in any role: the policy is
the gate that decides who may run or approve what; the demo's RBAC adds only
"strangers may not write", so an unmapped or unknown identity is refused with
a real 403, as on a cluster that never bound them a Role.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpuctl.identity import Identity
from gpuctl.playbooks.policy import Policy

DEMO_USER = Identity(user="demo-user", groups=("demo:sre",))  # the demo's kubeconfig user: the requester by default
DEMO_LEAD = Identity(user="demo-lead", groups=("demo:leads",))  # approves what demo-user asks for
READ_VERBS = frozenset({"get", "list", "watch"})


class DemoAccess:
    def __init__(self, own: Identity, policy: Policy | None) -> None:
        self.own = own
        roles = policy.roles.values() if policy is not None else ()
        self._users = {user for role in roles for user in role.users}
        self._groups = {group for role in roles for group in role.groups}

    def identity(self, headers: Mapping[str, str], groups: list[str]) -> Identity:
        """Impersonate-User (with every Impersonate-Group), else the connection's own identity."""
        user = headers.get("Impersonate-User")
        return Identity(user=user, groups=tuple(groups)) if user else self.own

    def may(self, who: Identity, verb: str) -> bool:
        if verb in READ_VERBS or who == self.own:
            return True
        return who.user in self._users or not self._groups.isdisjoint(who.groups)

    def reason(self, who: Identity, verb: str) -> str:
        if verb in READ_VERBS:
            return "demo RBAC: every authenticated user may read"
        if who == self.own:
            return "demo RBAC: the demo's own credentials may do anything"
        if self.may(who, verb):
            return f"demo RBAC: {who.user} is named in the demo's policy"
        return ""
