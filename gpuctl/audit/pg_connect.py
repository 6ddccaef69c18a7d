"""Connections to the PostgreSQL audit log, and its driver's errors as gpuctl's.

The URL is libpq's (psycopg 3 hands it to libpq), so everything libpq reads
works: `?sslmode=verify-full`, `?host=/run/postgresql` for a Unix socket,
PGPASSWORD, ~/.pgpass, PGSSLROOTCERT. gpuctl adds a connect timeout and an
application name unless the URL sets them, and a lock timeout per session.
No message gpuctl writes repeats the password: the URL is shown redacted and
the password is cut out of the driver's text.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gpuctl.audit.backend import redact_url
from gpuctl.errors import AuditError, AuditUnavailable


class PgTarget:
    """Where a PostgreSQL audit log is and how to reach it; `location` is safe to print."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0, lock_timeout_s: float = 30.0) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise ValueError(_scrub(str(e), url)) from None
        self.url = url
        self.location = redact_url(url)
        self._secrets = [s for s in (_raw_password(url), str(params.get("password") or "")) if s]
        self._extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = max(1, round(connect_timeout_s))
        if "application_name" not in params:
            self._extra["application_name"] = "gpuctl-audit"
        self._lock_timeout_ms = round(lock_timeout_s * 1000)

    async def connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """A new autocommit connection (transactions are explicit). AuditUnavailable if it cannot be had."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **self._extra)
        except psycopg.Error as e:
            raise self.failure(e, "cannot connect to") from e
        try:
            # Appends wait for each other; a writer stuck for this long is an error, not a reason to hang.
            await conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
            # A holder on a dead host must lose its run locks in about a minute, not after TCP's two hours.
            await conn.execute("SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3")
        except psycopg.Error as e:
            await conn.close()
            raise self.failure(e, "cannot set up a session with") from e
        return conn

    def failure(self, error: psycopg.Error, doing: str = "failed on") -> AuditError:
        """The driver's error as gpuctl's: AuditUnavailable when the server cannot be reached or used."""
        text = self.scrub(str(error).strip().replace("\n", " ") or type(error).__name__)
        if isinstance(error, psycopg.errors.LockNotAvailable):
            return AuditError(
                f"the audit log {self.location} stayed locked by another writer for {self._lock_timeout_ms / 1000:g}s",
                hint="another gpuctl process is stuck mid-append; check the database's pg_stat_activity",
            )
        if isinstance(error, psycopg.OperationalError):
            return AuditUnavailable(
                f"{doing} the audit database {self.location}: {text}",
                hint="check that PostgreSQL is up and reachable, and the URL's user and password (PGPASSWORD, ~/.pgpass)",
            )
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return AuditError(
                f"the audit database {self.location} refused: {text}",
                hint="the user needs SELECT and INSERT on gpuctl_audit_records and all rights on gpuctl_audit_holds",
            )
        return AuditError(f"audit log {self.location}: {text}", hint="check the database and gpuctl's rights in it")

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _raw_password(url: str) -> str:
    """The password as written in the URL (percent-encoded), so it can be cut out of any text."""
    userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
    return userinfo.partition(":")[2]


def _scrub(text: str, url: str) -> str:
    secret = _raw_password(url)
    return text.replace(secret, "***") if secret else text
