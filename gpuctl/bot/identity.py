"""Who a Slack user is in Kubernetes: the identity map file and its resolver.

    users:                       # Slack user id -> Kubernetes user (and groups)
      U0123ABCD: {user: alice, groups: [team-a]}
    emails:                      # looked up with users.info (scope users:read.email)
      bob@example.com: {user: bob}
    usergroups:                  # Slack user group id -> Kubernetes groups its members gain
      S0456EFGH: [gpu-platform]
    usergroup_user_prefix: "slack:"

A user id entry wins over an email entry; user groups add groups to either.
Someone matched only through a user group acts as `<prefix><Slack user id>`
with those groups (RBAC bound to the group then applies). Anyone else is
unmapped: they may read what the gpuctl policy lets unmapped users read
(`may_view`) and can never act. Email and user-group lookups go to the Slack
Web API only when the map has such entries, and are cached for a few minutes;
a failed lookup leaves the user as mapped as the rest of the file makes them
(fail closed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from gpuctl.errors import BotConfigError
from gpuctl.identity import Identity
from gpuctl.model import Frozen
from gpuctl.playbooks import marked

log = logging.getLogger(__name__)

SlackUserId = Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,20}$")]
SlackGroupId = Annotated[str, StringConstraints(pattern=r"^S[A-Z0-9]{2,20}$")]
KubeName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[^\s]+$")]
CACHE_S = 300.0


class Mapped(Frozen):
    user: KubeName
    groups: tuple[KubeName, ...] = ()


class IdentityMap(Frozen):
    users: dict[SlackUserId, Mapped] = Field(default_factory=dict)
    emails: dict[str, Mapped] = Field(default_factory=dict)
    usergroups: dict[SlackGroupId, tuple[KubeName, ...]] = Field(default_factory=dict)
    usergroup_user_prefix: str = Field("slack:", max_length=63, pattern=r"^[^\s]*$")

    @field_validator("emails")
    @classmethod
    def _emails(cls, emails: dict[str, Mapped]) -> dict[str, Mapped]:
        lowered: dict[str, Mapped] = {}
        for email, mapped in emails.items():
            if "@" not in email or email.strip() != email:
                raise ValueError(f"{email!r} is not an email address")
            if email.lower() in lowered:
                raise ValueError(f"{email!r} is listed twice (emails are compared without case)")
            lowered[email.lower()] = mapped
        return lowered


def load_identity_map(path: Path | None) -> IdentityMap:
    """The map in `path` (an empty map, everyone unmapped, when None); BotConfigError naming file, line and field."""
    if path is None:
        return IdentityMap()
    return marked.load(IdentityMap, path, BotConfigError, "identity map", hint="fix slack_identity_map")[0]


# A Web API method as the resolver calls it: keyword arguments in, the response's data out.
WebCall = Callable[..., Awaitable[Any]]


class _Cache:
    def __init__(self, ttl_s: float, now: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.now = now
        self.items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        hit = self.items.get(key)
        if hit is None or self.now() - hit[0] > self.ttl_s:
            return False, None
        return True, hit[1]

    def put(self, key: str, value: Any) -> None:
        self.items[key] = (self.now(), value)


class IdentityResolver:
    """Slack user id -> Identity (or None: unmapped), through the map and, where it needs them, the Web API.

    `users_info` and `usergroup_members` are the Web API methods (AsyncWebClient's
    `users_info` and `usergroups_users_list`), injected so the resolver is usable
    without a client when the map needs neither.
    """

    def __init__(
        self,
        mapping: IdentityMap,
        *,
        users_info: WebCall | None = None,
        usergroup_members: WebCall | None = None,
        cache_s: float = CACHE_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mapping = mapping
        self._users_info = users_info
        self._usergroup_members = usergroup_members
        self._emails = _Cache(cache_s, now)
        self._members = _Cache(cache_s, now)

    async def resolve(self, user_id: str) -> Identity | None:
        base = self.mapping.users.get(user_id)
        if base is None and self.mapping.emails:
            email = await self._email(user_id)
            base = self.mapping.emails.get(email) if email else None
        extra: list[str] = []
        for group_id, groups in self.mapping.usergroups.items():
            if user_id in await self._members_of(group_id):
                extra += groups
        if base is None and not extra:
            return None
        user = base.user if base else f"{self.mapping.usergroup_user_prefix}{user_id}"
        groups = tuple(dict.fromkeys([*(base.groups if base else ()), *extra]))
        return Identity(user=user, groups=groups)

    async def _email(self, user_id: str) -> str | None:
        hit, cached = self._emails.get(user_id)
        if hit:
            return cached
        if self._users_info is None:
            return None
        try:
            data = await self._users_info(user=user_id)
            email = data["user"]["profile"].get("email")
        except Exception as e:  # a Slack error or an odd answer: unmapped by email, said in the log
            log.warning("users.info for %s failed (%s): not matched by email", user_id, type(e).__name__)
            return None
        value = email.lower() if isinstance(email, str) else None
        self._emails.put(user_id, value)
        return value

    async def _members_of(self, group_id: str) -> frozenset[str]:
        hit, cached = self._members.get(group_id)
        if hit:
            return cached
        if self._usergroup_members is None:
            return frozenset()
        try:
            data = await self._usergroup_members(usergroup=group_id)
            members = frozenset(u for u in data["users"] if isinstance(u, str))
        except Exception as e:  # as above: nobody gains the group's rights while Slack cannot say who is in it
            log.warning("usergroups.users.list for %s failed (%s): its members gain nothing", group_id, type(e).__name__)
            return frozenset()
        self._members.put(group_id, members)
        return members
