"""The bot's settings: from GPUCTL_* variables and the config file like every other, secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuctl.bot.server import check_settings
from gpuctl.config import load_settings
from gpuctl.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("GPUCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_from_environment_and_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("bot_port: 8080\nslack_api_url: http://127.0.0.1:9/api\n")
    monkeypatch.setenv("GPUCTL_SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("GPUCTL_SLACK_SIGNING_SECRET", "signing-from-env")
    s = load_settings(config_file=config)
    assert s.bot_port == 8080 and s.bot_host == "0.0.0.0"
    assert s.slack_api_url == "http://127.0.0.1:9/api/"  # the SDK appends method names
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value() == "xoxb-from-env"
    shown = f"{s!r} {s} {s.model_dump()}"
    assert "xoxb-from-env" not in shown and "signing-from-env" not in shown
    check_settings(s, socket_mode=False)
    with pytest.raises(ConfigError, match=r"the bot needs slack_app_token.*GPUCTL_SLACK_APP_TOKEN"):
        check_settings(s, socket_mode=True)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"slack_api_url": "slack.com/api"}, "is not an http(s) URL like https://slack.com/api/"),
        ({"bot_port": 70000}, "bot_port"),
        ({"slack_identity_map": Path("/nonexistent/ids.yaml")}, "slack_identity_map '/nonexistent/ids.yaml' does not exist"),
        ({"alert_rules": Path("/nonexistent/rules.yaml")}, "alert_rules '/nonexistent/rules.yaml' does not exist"),
    ],
)
def test_bad_values_are_named(flags: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings(**flags)
    assert says in str(caught.value)
