"""Slack users → Kubernetes identities: the map file, lookups through the Web API, caching, failing closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from slack_sdk.web.async_client import AsyncWebClient

from gpuctl.bot.identity import IdentityMap, IdentityResolver, Mapped, load_identity_map
from gpuctl.errors import BotConfigError
from gpuctl.identity import Identity
from testbed.slack import BOT_TOKEN, FakeSlack


@pytest_asyncio.fixture(loop_scope="session")
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(users={"U0BOB0001": "BOB@example.com", "U0CAROL01": "carol@example.com"},
                         usergroups={"S0ONCALL1": ["U0BOB0001", "U0DAVE001"], "S0ADMINS1": ["U0DAVE001"]}) as fake:  # fmt: skip
        yield fake


def resolver(slack: FakeSlack, mapping: IdentityMap, clock: list[float] | None = None) -> IdentityResolver:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    now = clock or [0.0]
    return IdentityResolver(mapping, users_info=client.users_info, usergroup_members=client.usergroups_users_list,
                            cache_s=300, now=lambda: now[0])  # fmt: skip


MAPPING = IdentityMap(
    users={"U0ALICE01": Mapped(user="alice", groups=("team-a",)), "U0BOB0001": Mapped(user="bob-by-id")},
    emails={"bob@example.com": Mapped(user="bob-by-email"), "carol@example.com": Mapped(user="carol", groups=("team-b",))},
    usergroups={"S0ONCALL1": ("gpu-oncall",), "S0ADMINS1": ("gpu-platform", "gpu-oncall")},
)


async def test_user_id_first_then_email_then_user_groups(slack: FakeSlack) -> None:
    r = resolver(slack, MAPPING)
    assert await r.resolve("U0ALICE01") == Identity(user="alice", groups=("team-a",))
    assert await r.resolve("U0BOB0001") == Identity(user="bob-by-id", groups=("gpu-oncall",))  # id wins over email
    assert await r.resolve("U0CAROL01") == Identity(user="carol", groups=("team-b",))  # by email, any case
    # Only through user groups: the prefixed Slack id, with every group once.
    assert await r.resolve("U0DAVE001") == Identity(user="slack:U0DAVE001", groups=("gpu-oncall", "gpu-platform"))
    assert await r.resolve("U0NOBODY1") is None
    assert {c.token for c in slack.calls} == {BOT_TOKEN}


async def test_lookups_are_cached_for_a_while(slack: FakeSlack) -> None:
    clock = [0.0]
    r = resolver(slack, MAPPING, clock)
    for _ in range(3):
        await r.resolve("U0CAROL01")
    assert len(slack.called("users.info")) == 1 and len(slack.called("usergroups.users.list")) == 2
    clock[0] = 301.0
    await r.resolve("U0CAROL01")
    assert len(slack.called("users.info")) == 2


async def test_no_lookups_when_the_map_needs_none(slack: FakeSlack) -> None:
    r = resolver(slack, IdentityMap(users={"U0ALICE01": Mapped(user="alice")}))
    assert await r.resolve("U0NOBODY1") is None
    assert slack.calls == []


async def test_a_failing_slack_api_fails_closed(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    slack.fail["users.info"] = "ratelimited"
    slack.fail["usergroups.users.list"] = "ratelimited"
    with caplog.at_level("WARNING", logger="gpuctl.bot.identity"):
        assert await resolver(slack, MAPPING).resolve("U0CAROL01") is None
        assert await resolver(slack, MAPPING).resolve("U0ALICE01") == Identity(user="alice", groups=("team-a",))
    assert any("users.info for U0CAROL01 failed" in r.getMessage() for r in caplog.records)


def test_map_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "ids.yaml"
    path.write_text("users:\n  U0ALICE01: {user: alice}\n  alice: {user: alice}\nemails:\n  not-an-email: {user: x}\n")
    with pytest.raises(BotConfigError) as caught:
        load_identity_map(path)
    where = {(p.line, p.field) for p in caught.value.problems}
    assert (3, "users.alice") in where and any(line == 4 for line, _ in where)
    assert "not-an-email" in str(caught.value)


def test_emails_are_compared_without_case(tmp_path: Path) -> None:
    path = tmp_path / "ids.yaml"
    path.write_text("emails:\n  A@X.org: {user: a}\n  a@x.org: {user: b}\n")
    with pytest.raises(BotConfigError, match="listed twice"):
        load_identity_map(path)
    assert load_identity_map(None) == IdentityMap()


def test_an_unreadable_map_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(BotConfigError, match=r"cannot read identity map .*missing.yaml.*fix slack_identity_map"):
        load_identity_map(tmp_path / "missing.yaml")
