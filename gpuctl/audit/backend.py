"""Where the audit log is kept: the backend interface, and the location setting that picks one.

The `audit` setting (flag `--audit`, GPUCTL_AUDIT, config file) names the log:

    /var/lib/gpuctl/audit.sqlite      a SQLite file (the default backend)
    sqlite:///var/lib/gpuctl/audit.sqlite   the same, as a URL (what follows sqlite:// is the path)
    (unset)                           $XDG_STATE_HOME/gpuctl/audit.sqlite (~/.local/state/gpuctl/audit.sqlite)
    postgresql://gpuctl@db:5432/gpuctl   a PostgreSQL database (postgres:// too; libpq URL syntax,
                                      so PGPASSWORD, ~/.pgpass and ?sslmode=... work): for several
                                      replicas or hosts sharing one log

A backend serialises appends across processes (one valid chain however many
gpuctl processes write), and tracks which runs a live process is recording so
that a process that dies mid-run can be told from one that is still working.
Messages name a PostgreSQL log by its URL with the password replaced by ***.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from gpuctl.audit.records import AuditEvent, AuditRecord
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import ConfigError

_ACCEPTED = "a file path, sqlite:///path/to/audit.sqlite or postgresql://user@host:5432/database"
POSTGRES_SCHEMES = ("postgresql", "postgres")


class Orphan(BaseModel):
    """A run a process was recording when it died: its lock outlived it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    holder: dict[str, Any] = Field(default_factory=dict, description="what the holder wrote about itself: pid, host")


class AuditBackend(Protocol):
    """An append-only, hash-chained store of audit records. Implementations: `SqliteBackend`, `PostgresBackend`."""

    @property
    def location(self) -> str:
        """Where the log is, for messages."""
        ...

    async def append(self, event: AuditEvent) -> AuditRecord:
        """Seal `event` onto the head of the chain (sequence, time, prev_hash read in the same transaction)."""
        ...

    async def append_if_open(self, event: AuditEvent) -> AuditRecord | None:
        """As `append`, unless the run has no records or its last one ends it (checked in the same transaction)."""
        ...

    async def records(
        self,
        *,
        run_id: str | None = None,
        after_seq: int | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records in sequence order (or newest first), filtered. Raises AuditTampered on an unreadable row."""
        ...

    async def head(self) -> AuditRecord | None:
        """The last record; None when the log is empty."""
        ...

    async def rows(self, *, after_seq: int | None = None, limit: int) -> list[dict[str, Any]]:
        """Stored rows in the export form, unvalidated, in sequence order: what verify and export read,
        so that a damaged row is reported where it is rather than raised."""
        ...

    def hold(self, run_id: str) -> AbstractAsyncContextManager[None]:
        """Mark this process as recording `run_id` until the block ends. If the process dies inside it,
        or the block raises (a crash, a cancel), `orphans()` reports the run afterwards; a block that ends
        normally leaves the run as it is (ended, or resting until an approval). Raises AuditError if a live
        process already holds it."""
        ...

    def orphans(self) -> AbstractAsyncContextManager[Sequence[Orphan]]:
        """Runs whose holder died, held by this process for the block (so no one else handles them too)
        and forgotten after it."""
        ...

    async def __aenter__(self) -> Self:
        """Connect (and create the log, unless opened with create=False)."""
        ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def aclose(self) -> None: ...


def default_audit_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gpuctl" / "audit.sqlite"


def sqlite_path(location: str | None) -> Path:
    """The SQLite file an `audit` setting names. Raises ValueError for anything else, saying what works."""
    if location is None:
        return default_audit_path()
    text = location.strip()
    if not text:
        raise ValueError(f"empty: give {_ACCEPTED}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Path(text).expanduser()
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest:
            raise ValueError(f"names no file: give {_ACCEPTED}")
        return Path(rest).expanduser()
    if scheme in POSTGRES_SCHEMES:
        raise ValueError("is a PostgreSQL URL, not a SQLite file")
    raise ValueError(f"unknown audit backend {scheme!r}; use {_ACCEPTED}")


def postgres_url(location: str | None) -> str | None:
    """The URL if the `audit` setting names a PostgreSQL database (None if it names SQLite).
    Raises ValueError for a URL libpq could not use, without repeating its password."""
    if location is None:
        return None
    text = location.strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in POSTGRES_SCHEMES:
        return None
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    query = dict(parse_qsl(parts.query))
    if not parts.path.strip("/") and "dbname" not in query:
        raise ValueError(f"names no database: give {_ACCEPTED}")
    return text


def check_location(location: str | None) -> None:
    """Raises ValueError, saying what works, unless some backend reads this `audit` setting."""
    if postgres_url(location) is None:
        sqlite_path(location)


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or a password= parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    shown = url
    if parts.password is not None:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        shown = shown.replace(parts.netloc, f"{userinfo.partition(':')[0]}:***@{hostport}", 1)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        hidden = urlencode([(key, "***" if key == "password" else value) for key, value in query], safe="*/")
        shown = shown.replace("?" + parts.query, "?" + hidden, 1)
    return shown


def open_audit(location: str | None, *, create: bool = True, clock: Clock = utcnow) -> AuditBackend:
    """The backend for an `audit` setting, not yet connected: use it as `async with open_audit(...) as log`.

    `create=False` (read-only commands) refuses a log that does not exist instead of starting an empty one."""
    try:
        url = postgres_url(location)
        if url is not None:
            from gpuctl.audit.postgres import PostgresBackend

            return PostgresBackend(url, create=create, clock=clock)
        path = sqlite_path(location)
    except ValueError as e:
        shown = redact_url(location) if location and "://" in location else location
        raise ConfigError(f"audit={shown!r}: {e}", hint="fix --audit, GPUCTL_AUDIT or the config file's audit") from e
    from gpuctl.audit.sqlite import SqliteBackend

    return SqliteBackend(path, create=create, clock=clock)
