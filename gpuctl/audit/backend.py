"""Where the audit log is kept: the backend interface, and the location setting that picks one.

The `audit` setting (flag `--audit`, GPUCTL_AUDIT, config file) names the log:

    /var/lib/gpuctl/audit.sqlite      a SQLite file (the default backend)
    sqlite:///var/lib/gpuctl/audit.sqlite   the same, as a URL (what follows sqlite:// is the path)
    (unset)                           $XDG_STATE_HOME/gpuctl/audit.sqlite (~/.local/state/gpuctl/audit.sqlite)

PostgreSQL (postgresql://...) is planned and refused until it exists. A
backend serialises appends across processes (one valid chain however many
gpuctl processes write), and tracks which runs a live process is recording so
that a process that dies mid-run can be told from one that is still working.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field

from gpuctl.audit.records import AuditEvent, AuditRecord
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import ConfigError

_ACCEPTED = "a file path, or sqlite:///path/to/audit.sqlite"


class Orphan(BaseModel):
    """A run a process was recording when it died: its lock outlived it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    holder: dict[str, Any] = Field(default_factory=dict, description="what the holder wrote about itself: pid, host")


class AuditBackend(Protocol):
    """An append-only, hash-chained store of audit records. Implementations: `SqliteBackend`."""

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
    if scheme in ("postgres", "postgresql"):
        raise ValueError(f"a PostgreSQL audit backend is not available yet; use {_ACCEPTED}")
    raise ValueError(f"unknown audit backend {scheme!r}; use {_ACCEPTED}")


def open_audit(location: str | None, *, create: bool = True, clock: Clock = utcnow) -> AuditBackend:
    """The backend for an `audit` setting, not yet connected: use it as `async with open_audit(...) as log`.

    `create=False` (read-only commands) refuses a log that does not exist instead of starting an empty one."""
    from gpuctl.audit.sqlite import SqliteBackend

    try:
        path = sqlite_path(location)
    except ValueError as e:
        raise ConfigError(f"audit={location!r}: {e}", hint="fix --audit, GPUCTL_AUDIT or the config file's audit") from e
    return SqliteBackend(path, create=create, clock=clock)
