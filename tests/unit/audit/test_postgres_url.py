"""Which `audit` settings name PostgreSQL, what is refused before connecting, and how URLs are shown."""

from __future__ import annotations

import pytest

from gpuctl.audit import open_audit
from gpuctl.audit.backend import check_location, postgres_url, redact_url
from gpuctl.audit.postgres import PostgresBackend
from gpuctl.audit.sqlite import SqliteBackend
from gpuctl.config import load_settings
from gpuctl.errors import ConfigError


def test_postgres_urls_pick_postgres_and_everything_else_sqlite() -> None:
    assert postgres_url("postgresql://gpuctl@db:5432/audit") == "postgresql://gpuctl@db:5432/audit"
    assert postgres_url("  POSTGRES://gpuctl@db/audit ") == "POSTGRES://gpuctl@db/audit"
    assert postgres_url("postgresql:///audit?host=/run/postgresql") is not None  # a Unix socket
    assert postgres_url("postgresql://db?dbname=audit") is not None
    for other in (None, "/var/lib/gpuctl/audit.sqlite", "sqlite:///x.sqlite", "postgresql.sqlite"):
        assert postgres_url(other) is None
    assert isinstance(open_audit("postgres://gpuctl@db/audit"), PostgresBackend)
    assert isinstance(open_audit("sqlite:///tmp/x.sqlite"), SqliteBackend)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://gpuctl:pw@db:http/audit", "the port is not a number"),
        ("postgresql://gpuctl:pw@db:70000/audit", "the port is not a number"),
        ("postgresql://gpuctl:pw@db:5432", "names no database"),
        ("postgresql://gpuctl:pw@db/audit?colour=blue", 'invalid URI query parameter: "colour"'),
    ],
)
def test_unusable_urls_are_refused_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as refused:
        open_audit(url)
    assert ":pw@" not in str(refused.value)
    if "colour" not in url:  # libpq's own parameters are checked when the backend is made
        with pytest.raises(ValueError, match=needle):
            check_location(url)
        with pytest.raises(ConfigError, match=needle) as invalid:
            load_settings(audit=url)
        assert ":pw@" not in str(invalid.value) and "gpuctl:***@db" in str(invalid.value)


def test_redaction() -> None:
    assert redact_url("postgresql://gpuctl:p%40ss@db:5432/audit") == "postgresql://gpuctl:***@db:5432/audit"
    assert redact_url("postgres://gpuctl:@db/audit") == "postgres://gpuctl:***@db/audit"
    assert redact_url("postgresql://db/audit?password=zz&sslmode=require") == "postgresql://db/audit?password=***&sslmode=require"
    for unchanged in ("postgresql:///audit?host=%2Frun%2Fpostgresql&user=gpuctl", "postgresql://gpuctl@db/audit"):
        assert redact_url(unchanged) == unchanged
    assert PostgresBackend("postgresql://gpuctl:hunter2@db/audit").location == "postgresql://gpuctl:***@db/audit"
