"""Settings precedence (flags > GPUCTL_* env > config file > defaults) and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.config import load_settings, parse_duration
from gpuctl.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("GPUCTL_"):
            monkeypatch.delenv(name)
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings()
    assert s.refresh_s == 15 and s.idle_threshold_pct == 5 and s.idle_window_s == 1800
    assert s.mode == "kubernetes" and s.prometheus_url is None and s.stale_after_s is None


def test_precedence_flag_over_env_over_file(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    write(clean_env / "gpuctl" / "config.yaml", "context: from-file\nrefresh_s: 5\nidle_window_s: 45m\npool_label: team\n")
    s = load_settings()
    assert (s.context, s.refresh_s, s.idle_window_s, s.pool_label) == ("from-file", 5, 2700, "team")
    monkeypatch.setenv("GPUCTL_CONTEXT", "from-env")
    monkeypatch.setenv("GPUCTL_REFRESH_S", "7")
    s = load_settings()
    assert (s.context, s.refresh_s, s.pool_label) == ("from-env", 7, "team")
    s = load_settings(context="from-flag", refresh_s=None)  # None = flag not given
    assert (s.context, s.refresh_s) == ("from-flag", 7)


def test_explicit_config_file_flag_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "context: a\n")
    b = write(tmp_path / "b.yaml", "context: b\n")
    monkeypatch.setenv("GPUCTL_CONFIG_FILE", str(a))
    assert load_settings().context == "a"
    assert load_settings(config_file=b).context == "b"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), ("2d", 172800)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_env_durations_and_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUCTL_IDLE_WINDOW_S", "1h")
    monkeypatch.setenv("GPUCTL_DEMO", "true")
    s = load_settings()
    assert s.idle_window_s == 3600 and s.mode == "demo"


def test_demo_and_local_refresh_faster_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(demo=True).refresh_s == 2 and load_settings(local=True).refresh_s == 2
    assert load_settings(local=True, refresh_s="10s").refresh_s == 10
    monkeypatch.setenv("GPUCTL_REFRESH_S", "30")
    assert load_settings(demo=True).refresh_s == 30


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"idle_window_s": "30x"}, "idle_window_s='30x'"),
        ({"idle_window_s": "nan"}, "idle_window_s='nan'"),
        ({"idle_window_s": "9" * 400}, "not a finite duration"),
        ({"refresh_s": 0}, "refresh_s"),
        ({"idle_threshold_pct": 150}, "idle_threshold_pct"),
        ({"prometheus_url": "prometheus:9090"}, "http(s) URL"),
        ({"demo": True, "local": True}, "one of --demo and --local"),
        ({"prometheus_username": "u"}, "both prometheus_username and prometheus_password"),
        ({"prometheus_ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        ({"audit": "postgresql://gpuctl:pw@db:x/audit"}, "audit='postgresql://gpuctl:***@db:x/audit': the port is not a number"),
        ({"audit": "s3://bucket/audit"}, "unknown audit backend 's3'"),
    ],
)
def test_bad_values_name_the_setting(flags: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**flags)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(config_file=write(tmp_path / "x.yaml", "refresh: 5\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(config_file=write(tmp_path / "y.yaml", "- 1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(config_file=write(tmp_path / "z.yaml", "a: [\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.yaml")


def test_metrics_selector_from_flag_env_and_file_is_checked_and_canonical(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings().metrics_selector is None
    assert load_settings(metrics_selector="{ cluster = 'prod-a' }").metrics_selector == 'cluster="prod-a"'
    monkeypatch.setenv("GPUCTL_METRICS_SELECTOR", 'cluster=~"prod-.*"')
    assert load_settings().metrics_selector == 'cluster=~"prod-.*"'
    monkeypatch.delenv("GPUCTL_METRICS_SELECTOR")
    config = write(tmp_path / "c.yaml", 'metrics_selector: \'cluster="prod-b"\'\ngpu_stale_after_s: 90s\n')
    s = load_settings(config_file=config)
    assert (s.metrics_selector, s.gpu_stale_after_s) == ('cluster="prod-b"', 90)
    with pytest.raises(ConfigError, match=r"metrics_selector='cluster=~\"\(\"': cluster=~: '\(' is not a valid regular"):
        load_settings(metrics_selector='cluster=~"("')
    with pytest.raises(ConfigError, match="gpu_stale_after_s"):
        load_settings(gpu_stale_after_s="0s")


def test_secrets_are_not_printed() -> None:
    s = load_settings(prometheus_token="s3cret", prometheus_url="http://p:9090/")
    assert "s3cret" not in repr(s) and s.prometheus_url == "http://p:9090"
    assert s.prometheus_token is not None and s.prometheus_token.get_secret_value() == "s3cret"


def test_audit_location(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    assert load_settings().audit is None  # the backend's default path, resolved when opened
    monkeypatch.setenv("GPUCTL_AUDIT", "/var/lib/gpuctl/audit.sqlite")
    assert load_settings().audit == "/var/lib/gpuctl/audit.sqlite"
    assert load_settings(audit="sqlite:///srv/audit.sqlite").audit == "sqlite:///srv/audit.sqlite"
    assert load_settings(audit="postgresql://gpuctl@db/audit").audit == "postgresql://gpuctl@db/audit"
    monkeypatch.delenv("GPUCTL_AUDIT")
    write(clean_env / "gpuctl" / "config.yaml", "audit: ~/audit.sqlite\n")
    assert load_settings().audit == "~/audit.sqlite"


def test_replica_settings_from_env_and_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.leader_lease_s, s.leader_renew_deadline_s, s.leader_retry_s, s.lock_lease_s, s.health_port) == (15, 10, 2, 60, 8081)
    monkeypatch.setenv("GPUCTL_REPLICA_NAME", "gpuctl-7f9c-abcde")
    monkeypatch.setenv("GPUCTL_LEADER_LEASE_S", "30s")
    monkeypatch.setenv("GPUCTL_LEADER_RENEW_DEADLINE_S", "20s")
    s = load_settings(lock_lease_s="2m")
    assert (s.replica_name, s.leader_lease_s, s.leader_renew_deadline_s, s.lock_lease_s) == ("gpuctl-7f9c-abcde", 30, 20, 120)
    with pytest.raises(ConfigError, match=r"leader_retry_s \(25\) < leader_renew_deadline_s \(20\)"):
        load_settings(leader_retry_s=25)
