"""bot/slack-app-manifest.yaml matches the code: the command, the interactivity, every scope of every Web API call."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from slack_sdk.web.async_client import AsyncWebClient

from gpuctl.bot import commands
from gpuctl.bot.app import COMMAND
from gpuctl.bot.server import EVENTS_PATH

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = yaml.safe_load((ROOT / "bot" / "slack-app-manifest.yaml").read_text())

# The bot scopes each Web API method needs (api.slack.com/methods/<method>). A method missing here fails the test:
# add it with its scopes, and the scopes to the manifest.
METHOD_SCOPES = {
    "chat_postMessage": {"chat:write"},
    "chat_update": {"chat:write"},
    "users_info": {"users:read", "users:read.email"},  # the email is in the profile only with users:read.email
    "usergroups_users_list": {"usergroups:read"},
}
NOT_METHODS = {"token", "base_url", "logger", "headers", "timeout", "ssl", "proxy"}


def web_api_methods_used() -> set[str]:
    used: set[str] = set()
    for path in (ROOT / "gpuctl" / "bot").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else ""
            if name and not name.startswith("_") and name not in NOT_METHODS and callable(getattr(AsyncWebClient, name, None)):
                used.add(name)
    return used


def test_every_scope_used_is_declared_and_none_more() -> None:
    used = web_api_methods_used()
    assert used >= {"chat_postMessage", "chat_update", "users_info", "usergroups_users_list"}
    assert used <= set(METHOD_SCOPES), f"scopes unknown for {used - set(METHOD_SCOPES)}"
    needed = {"commands"} | {scope for method in used for scope in METHOD_SCOPES[method]}
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == needed


def test_the_command_and_interactivity_point_at_the_bot() -> None:
    (command,) = MANIFEST["features"]["slash_commands"]
    assert command["command"] == COMMAND
    assert command["url"].endswith(EVENTS_PATH) and MANIFEST["settings"]["interactivity"]["request_url"].endswith(EVENTS_PATH)
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    for verb in commands.USAGE:
        assert verb in command["usage_hint"]
    assert command["should_escape"] is False  # the parser reads Slack's &lt; &gt; &amp; itself


def test_the_shipped_examples_load() -> None:
    from gpuctl.bot.alert_rules import load_alert_rules
    from gpuctl.bot.identity import load_identity_map
    from gpuctl.playbooks.loader import load_catalog
    from gpuctl.playbooks.policy import load_policy

    catalog = load_catalog()
    policy = load_policy(ROOT / "deploy" / "policy.example.yaml", playbooks=catalog.playbooks)
    assert load_identity_map(ROOT / "bot" / "identity-map.example.yaml").users
    assert load_alert_rules(ROOT / "bot" / "alert-rules.example.yaml", catalog, policy).rules
