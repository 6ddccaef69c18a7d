"""The tamper-evident audit log every playbook step lands in.

Append-only records, each sealed with the hash of the one before it, kept in
SQLite by default or in PostgreSQL for a log several hosts share
(`open_audit(settings.audit)`: a `postgresql://` URL picks it). `verify()` walks the chain;
`mark_interrupted()` records the runs a dead process left in flight.

    async with open_audit(settings.audit) as log:
        await mark_interrupted(log)                     # at start: runs a crash left in flight
        async with log.hold(run_id):                    # "this process is recording run_id"
            await log.append(AuditEvent(run_id=run_id, kind=EventKind.EXECUTION_STARTED, actor=requester,
                                        payload={"plan": plan_fingerprint}))
        result = await verify(log, expect_head=Anchor.parse(kept))  # kept: "SEQ:HASH" from `gpuctl audit head`

Record format, version 1 (for verifying with another tool)
-----------------------------------------------------------
An exported record (`gpuctl audit export --json`, one per line) is a JSON object:

    version    1
    seq        1, 2, 3, ... with no gaps
    time       UTC, microseconds, "Z": "2026-11-30T12:00:01.250000Z"
    run_id     the run it belongs to
    kind       requested | planned | authorized | denied | approved | rejected | expired |
               execution_started | api_call | step | verified | completed | failed |
               interrupted | undo_started | undone          (records.EventKind)
    actor      who did it: {"identity": {"user": ..., "groups": [...]}, "via": "cli"|"tui"|"slack"|
               "alert"|"executor", "detail": ... or null}; null when gpuctl itself wrote it
    payload    a JSON object: the plan, the approval, an API call (method, path, status, audit_id,
               dry_run, result), the verification...
    prev_hash  the previous record's hash; record 1: 64 zeros
    hash       lower-case hex SHA-256 of the UTF-8 bytes of the RFC 8785 (JSON Canonicalization
               Scheme) serialisation of the object above WITHOUT its "hash" member: members sorted,
               no whitespace, numbers as ECMAScript prints them (see gpuctl/audit/canonical.py).
               Every member is present (null included), so the form is fixed.

To verify: for each record in seq order, check seq is the previous seq + 1 (the first is 1),
re-hash it, compare with `hash`, and check `prev_hash` equals the previous record's `hash`.
For records gpuctl writes (ASCII member names, integers), `jq -cS 'del(.hash)'` prints the same
bytes as RFC 8785, so `jq -cjS 'del(.hash)' <<<"$line" | sha256sum` reproduces `hash`.

A chain shows edits, deletions, insertions and reordering, but not records cut from its end,
nor a log rewritten and re-hashed from an edit onward by someone who can write the file: keep
an anchor elsewhere (`gpuctl audit head` prints SEQ:HASH) and check it with
`gpuctl audit verify --expect-head SEQ:HASH`.
"""

from gpuctl.audit.backend import AuditBackend, Orphan, default_audit_path, open_audit, sqlite_path
from gpuctl.audit.records import (
    EMPTY_ANCHOR,
    GENESIS_HASH,
    RECORD_VERSION,
    TERMINAL_KINDS,
    Anchor,
    ApiCall,
    AuditEvent,
    AuditRecord,
    EventKind,
)
from gpuctl.audit.recovery import mark_interrupted
from gpuctl.audit.verify import ChainProblem, ProblemKind, VerifyResult, verify, verify_rows

__all__ = [
    "EMPTY_ANCHOR",
    "GENESIS_HASH",
    "RECORD_VERSION",
    "TERMINAL_KINDS",
    "Anchor",
    "ApiCall",
    "AuditBackend",
    "AuditEvent",
    "AuditRecord",
    "ChainProblem",
    "EventKind",
    "Orphan",
    "ProblemKind",
    "VerifyResult",
    "default_audit_path",
    "mark_interrupted",
    "open_audit",
    "sqlite_path",
    "verify",
    "verify_rows",
]
