"""gpuctl settings: flags > GPUCTL_* environment > config file > defaults.

The config file is YAML with the same field names (`~/.config/gpuctl/config.yaml`,
or `$XDG_CONFIG_HOME/gpuctl/config.yaml`, or `--config` / GPUCTL_CONFIG_FILE):

    context: prod-gpu
    prometheus_url: https://prometheus.example.com
    metrics_selector: cluster="prod-a"
    idle_window_s: 45m

`load_settings()` is the one entry point; it turns every validation problem into
a ConfigError that names the setting, the bad value and the accepted form.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gpuctl.errors import ConfigError
from gpuctl.sources.selector import parse_selector

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE | re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)", re.ASCII)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from 90, '90', '90s', '30m', '1h30m', '1.5h'. Raises ValueError otherwise, nan and infinity included."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30m, 1h or 90s")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        elif not parts or "".join(n + u for n, u in parts).lower() != text.lower():
            raise ValueError(f"{value!r} is not a duration like 30m, 1h30m or 90s")
        else:
            seconds = sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


def _http_url(value: str, example: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL like {example}")
    return value


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpuctl" / "config.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUCTL_", extra="forbid", frozen=True, validate_default=True)

    config_file: Path | None = Field(None, description="YAML config file (default ~/.config/gpuctl/config.yaml)")

    # Kubernetes
    kubeconfig: Path | None = Field(None, description="kubeconfig path (default $KUBECONFIG, then ~/.kube/config)")
    context: str | None = Field(None, description="kubeconfig context (default: its current-context)")
    in_cluster: bool = Field(False, description="use the pod's service account instead of a kubeconfig")

    # Prometheus (DCGM metrics)
    prometheus_url: str | None = Field(None, description="Prometheus API root, e.g. http://prometheus:9090")
    prometheus_token: SecretStr | None = None
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_ca_file: Path | None = None
    prometheus_insecure: bool = False
    metrics_selector: str | None = Field(
        None, description='label matchers added to every metrics query, e.g. cluster="prod-a" (one cluster of many)'
    )

    # Behaviour
    refresh_s: float = Field(15.0, gt=0, le=3600, description="metrics refresh interval (demo/local default: 2s)")
    stale_after_s: float | None = Field(None, gt=0, description="metrics stale after (default 3 x refresh_s)")
    gpu_stale_after_s: float = Field(
        120.0,
        gt=0,
        description="a GPU's readings are stale when its power and temperature did not move, or were not sampled, "
        "for this long "
        "(keep it under Prometheus's 5m lookback and over 2 scrape intervals)",
    )
    idle_threshold_pct: float = Field(5.0, ge=0, le=100)
    idle_window_s: float = Field(1800.0, gt=0, description="how long under the threshold makes a GPU idle; '30m' ok")
    pool_label: str | None = Field(None, description="node label that names the pool")
    ready_timeout_s: float = Field(20.0, gt=0, description="how long one-shot commands wait for the first data")
    trace_file: Path | None = Field(
        None, description="append timing events here as JSON lines (start-up, publishes, frames, event-loop stalls): benchmarks"
    )

    # Other sources
    demo: bool = Field(False, description="a simulated cluster instead of a real one")
    demo_seed: int = 7
    demo_scale: int = Field(1, ge=1, le=100, description="simulated fleet size multiplier")
    local: bool = Field(False, description="this machine's GPUs via NVML, no Kubernetes")

    # Playbooks
    playbooks_dir: Path | None = Field(None, description="site playbooks (*.yaml) in addition to the built-in ones")
    policy: Path | None = Field(None, description="gpuctl policy file (roles, approvers, alerts); none: nobody may act")
    audit: str | None = Field(
        None, description="audit log: a SQLite file path, sqlite:///path, or postgresql://user@host/db for a shared log (default ~/.local/state/gpuctl/audit.sqlite)"
    )
    gpuctl_namespace: str = Field(
        "gpuctl",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="gpuctl's own namespace: PlaybookRuns, Leases and the kill switch ConfigMap live there",
    )
    playbooks_disabled: bool = Field(
        False, description="this process's kill switch: refuse to execute any playbook (cluster-wide: the ConfigMap)"
    )
    lock_lease_s: int = Field(
        60, ge=3, le=3600, description="leaseDurationSeconds of a run's per-target Leases (renewed every third of it)"
    )

    # `gpuctl serve` / `gpuctl executor` replicas (leader election: gpuctl.playbooks.leader)
    replica_name: str | None = Field(
        None, min_length=1, max_length=128,
        description="this replica's name: the leader Lease's holderIdentity (default: the host name, a pod's name)",
    )  # fmt: skip
    leader_lease_s: int = Field(15, ge=2, le=3600, description="leaseDurationSeconds of the leader Lease")
    leader_renew_deadline_s: float = Field(10.0, gt=0, description="a leader that could not renew for this long stops")
    leader_retry_s: float = Field(2.0, gt=0, description="how often the leader renews and followers try to take over")
    health_port: int = Field(8081, ge=0, le=65535, description="port of `gpuctl serve`'s /healthz and /readyz (0: any)")

    # Slack bot (`gpuctl bot serve`)
    slack_bot_token: SecretStr | None = Field(None, description="the bot's token, xoxb-...")
    slack_signing_secret: SecretStr | None = Field(None, description="verifies that HTTP requests come from Slack")
    slack_app_token: SecretStr | None = Field(None, description="xapp-... app-level token, for --socket-mode")
    slack_api_url: str | None = Field(None, description="Slack Web API base URL (default https://slack.com/api/)")
    bot_host: str = Field("0.0.0.0", min_length=1, description="address the bot's HTTP server listens on")
    bot_port: int = Field(3000, ge=0, le=65535, description="port of the bot's HTTP server (0: any free port)")
    bot_work_nice: int = Field(
        5, ge=0, le=19,
        description="over HTTP, the nice value the bot's work (answers, watches, refreshes, the engine) runs at, below "
                    "its front door process's acks (which keep the starting priority); 0: no change",
    )  # fmt: skip
    slack_identity_map: Path | None = Field(
        None, description="YAML file mapping Slack users and user groups to Kubernetes users and groups"
    )
    alert_rules: Path | None = Field(None, description="YAML file mapping Alertmanager alerts to playbooks")
    alertmanager_token: SecretStr | None = Field(
        None, description="bearer token Alertmanager must send to /alertmanager (its webhook http_config.authorization)"
    )

    @model_validator(mode="before")
    @classmethod
    def _fast_refresh_without_prometheus(cls, data: Any) -> Any:
        # The simulator and NVML are cheap to read; Prometheus scrapes every 15-30 s anyway.
        if isinstance(data, dict) and "refresh_s" not in data:
            if any(str(data.get(k, "")).strip().lower() in ("1", "true", "yes", "on") for k in ("demo", "local")):
                data = {**data, "refresh_s": 2.0}
        return data

    @field_validator(
        "refresh_s", "idle_window_s", "stale_after_s", "gpu_stale_after_s", "ready_timeout_s", "leader_renew_deadline_s",
        "leader_retry_s", "leader_lease_s", "lock_lease_s", mode="before",
    )
    @classmethod
    def _durations(cls, value: object) -> object:
        return None if value is None else parse_duration(value)

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _http_url(value, "http://prometheus:9090").rstrip("/")

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _http_url(value, "https://slack.com/api/").rstrip("/") + "/"  # the Slack SDK appends method names

    @field_validator("metrics_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        """Checked now, so a typo is a config error, not a Prometheus 400 on every refresh; kept canonical."""
        if value is None or not value.strip():
            return None
        return parse_selector(value).promql()

    @field_validator("audit")
    @classmethod
    def _audit_location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from gpuctl.audit.backend import check_location

        check_location(value)  # refuses what no backend reads, saying what works
        return value.strip()

    @field_validator(
        "kubeconfig", "prometheus_ca_file", "config_file", "playbooks_dir", "policy", "slack_identity_map", "alert_rules",
        "trace_file", mode="after",
    )
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @model_validator(mode="after")
    def _modes(self) -> Settings:
        if self.demo and self.local:
            raise ValueError("choose one of --demo and --local")
        if (self.prometheus_username is None) != (self.prometheus_password is None):
            raise ValueError("prometheus basic auth needs both prometheus_username and prometheus_password")
        if self.prometheus_ca_file is not None and not self.prometheus_ca_file.is_file():
            raise ValueError(f"prometheus_ca_file {str(self.prometheus_ca_file)!r} does not exist")
        if self.playbooks_dir is not None and not self.playbooks_dir.is_dir():
            raise ValueError(f"playbooks_dir {str(self.playbooks_dir)!r} is not a directory")
        if self.policy is not None and not self.policy.is_file():
            raise ValueError(f"policy {str(self.policy)!r} does not exist")
        if not self.leader_retry_s < self.leader_renew_deadline_s < self.leader_lease_s:
            raise ValueError(
                f"leader election needs leader_retry_s ({self.leader_retry_s:g}) < leader_renew_deadline_s "
                f"({self.leader_renew_deadline_s:g}) < leader_lease_s ({self.leader_lease_s})"
            )
        for name in ("slack_identity_map", "alert_rules"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {str(path)!r} does not exist")
        return self

    @property
    def mode(self) -> str:
        """'demo', 'local' or 'kubernetes': which sources `gpuctl.service` starts."""
        return "demo" if self.demo else "local" if self.local else "kubernetes"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFileSource(settings_cls, init_settings, env_settings)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML file named by the `config_file` setting (flag or env), else the default path if it exists."""

    def __init__(
        self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource, env: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._init = init
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        explicit = self._init().get("config_file") or self._env().get("config_file")
        path = Path(explicit).expanduser() if explicit else default_config_file()
        if not path.exists():
            if explicit:
                raise ConfigError(f"config file {path} does not exist", hint="fix --config or GPUCTL_CONFIG_FILE")
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from e
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {path} must be a mapping of setting: value")
        unknown = sorted(set(data) - set(Settings.model_fields))
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown setting(s) {', '.join(unknown)}",
                hint=f"known: {', '.join(sorted(Settings.model_fields))}",
            )
        return dict(data)


def load_settings(**flags: Any) -> Settings:
    """Settings from flags (None means 'not given'), GPUCTL_* variables and the config file."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        problems = "; ".join(_describe(err) for err in e.errors())
        raise ConfigError(f"invalid settings: {problems}", hint="check flags, GPUCTL_* variables and the config file") from e


def _describe(err: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()))
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not where:
        return message
    if err.get("type") == "extra_forbidden":
        return f"unknown setting {where}"
    value = err.get("input")
    if isinstance(value, str) and "://" in value:
        from gpuctl.audit.backend import redact_url

        value = redact_url(value)  # a URL may carry a password: never print it
    shown = "" if value is None or isinstance(value, Mapping) else f"={value!r}"
    return f"{where}{shown}: {message}"
