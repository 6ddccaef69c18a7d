"""Records and logs for the audit tests: fixed identities, a ticking clock, a typical run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpuctl.audit import GENESIS_HASH, ApiCall, AuditEvent, AuditRecord, EventKind
from gpuctl.audit.sqlite import INSERT, stored_row
from gpuctl.clock import Clock
from gpuctl.identity import Identity, Requester

USER_A = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="cli", detail="laptop-7")
APPROVER = Requester(identity=Identity(user="user-b", groups=("team-b", "oncall")), via="slack", detail="U024BE7LH")
T0 = datetime(2026, 11, 30, 12, 0, 0, 250000, tzinfo=UTC)


def ticking(start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> Clock:
    """A clock that moves `step` on every reading."""
    now = [start - step]

    def clock() -> datetime:
        now[0] += step
        return now[0]

    return clock


def run_events(run_id: str = "reclaim-7f3a") -> list[AuditEvent]:
    """A typical run, requested to completed."""
    call = ApiCall(
        method="POST", path="/api/v1/namespaces/team-a/pods/train-0/eviction", status=201,
        audit_id="4f1c1a8e-2c7e-4d7e-9a8e-0d1c2b3a4f5e", acting_as=None, dry_run=False, reason="Evicted",
    )  # fmt: skip
    return [
        AuditEvent(run_id=run_id, kind=EventKind.REQUESTED, actor=USER_A, payload={"playbook": "reclaim-idle-gpus"}),
        AuditEvent(run_id=run_id, kind=EventKind.PLANNED, actor=USER_A, payload={"targets": [{"pod": "train-0"}], "gpus": 4}),
        AuditEvent(run_id=run_id, kind=EventKind.APPROVED, actor=APPROVER, payload={"comment": "ok, idle since Friday"}),
        AuditEvent(run_id=run_id, kind=EventKind.EXECUTION_STARTED, actor=USER_A, payload={"fingerprint": "ab12"}),
        AuditEvent(run_id=run_id, kind=EventKind.API_CALL, actor=USER_A, payload=call.model_dump(mode="json")),
        AuditEvent(run_id=run_id, kind=EventKind.VERIFIED, actor=USER_A, payload={"pods_gone": ["train-0"]}),
        AuditEvent(run_id=run_id, kind=EventKind.COMPLETED, actor=USER_A, payload={}),
    ]


def seal_chain(events: Iterable[AuditEvent], *, clock: Clock | None = None) -> list[AuditRecord]:
    """Seal events into a chain the way a backend does."""
    clock = clock or ticking()
    chain: list[AuditRecord] = []
    for event in events:
        prev = chain[-1].hash if chain else GENESIS_HASH
        chain.append(AuditRecord.seal(event, seq=len(chain) + 1, time=clock(), prev_hash=prev))
    return chain


def tamper(path: Path, *statements: str, rows: Sequence[AuditRecord] = ()) -> None:
    """Edit the SQLite file directly, as someone with write access could: drop the append-only
    triggers, run the statements, insert the (forged) rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_records_append_only_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_records_append_only_delete")
        for statement in statements:
            conn.execute(statement)
        for record in rows:
            conn.execute(INSERT, stored_row(record))
    finally:
        conn.close()
