"""After a crash: say in the log that the runs a dead process was recording were interrupted.

Call `mark_interrupted(log)` when a process that records runs starts (the
engine, the executor). A run gets an `interrupted` record when the process
that held it (`log.hold(run_id)`) died inside the hold, or left it by an
exception, and the run's last record does not end it (`TERMINAL_KINDS`). Runs resting between processes,
such as one waiting for an approval, are nobody's holding and are left alone,
and so are runs a live process is executing right now.
"""

from __future__ import annotations

from gpuctl.audit.backend import AuditBackend
from gpuctl.audit.records import AuditEvent, AuditRecord, EventKind
from gpuctl.identity import Requester


async def mark_interrupted(log: AuditBackend, *, actor: Requester | None = None) -> list[AuditRecord]:
    """Append `interrupted` to each run whose holder died mid-run; return the records written.

    `actor` is who noticed (None: gpuctl itself). Safe to run from several processes at once:
    each orphan is handled by the one that locks it, and the append is skipped if the run ended."""
    written: list[AuditRecord] = []
    async with log.orphans() as orphans:
        for orphan in orphans:
            last = await log.records(run_id=orphan.run_id, limit=1, newest_first=True)
            if not last or last[0].ends_run:
                continue  # it ended before its holder died, or it never recorded anything
            payload = {
                "reason": "the process recording this run ended without finishing it",
                "last_seq": last[0].seq,
                "last_kind": last[0].kind.value,
                "holder": {k: v for k, v in orphan.holder.items() if k in ("pid", "host", "since")},
            }
            event = AuditEvent(run_id=orphan.run_id, kind=EventKind.INTERRUPTED, actor=actor, payload=payload)
            record = await log.append_if_open(event)
            if record is not None:
                written.append(record)
    return written
