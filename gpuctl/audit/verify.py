"""Walking the hash chain: does every record still say what it said when it was written?

Each record is checked, in sequence order, for: a readable record of a known
version; the next sequence number (a gap means deleted records, a repeat or
step back means reordered ones); content that hashes to its stored hash (an
edited field); a prev_hash equal to the previous record's hash (an inserted,
reordered or rehashed record; for record 1, the genesis hash). The walk stops
at the first problem.

What a chain cannot show: records cut from its END leave a shorter, valid
chain, and whoever can rewrite the file can rehash everything after an edit.
Both are caught only against an anchor kept elsewhere: `gpuctl audit head`
prints SEQ:HASH, and verifying with `expect_head` requires that record to be
in the log with exactly that hash.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuctl.audit.backend import AuditBackend
from gpuctl.audit.canonical import canonical_json
from gpuctl.audit.records import GENESIS_HASH, RECORD_VERSION, Anchor, AuditRecord

PAGE = 1000


class ProblemKind(StrEnum):
    UNREADABLE = "unreadable"  # not a record: bad JSON, unknown kind, a field missing or malformed
    UNSUPPORTED_VERSION = "unsupported_version"  # a record format this gpuctl does not know
    MISSING = "missing"  # a gap in the sequence: records deleted
    OUT_OF_ORDER = "out_of_order"  # a sequence number repeated or going back: records moved or copied
    EDITED = "edited"  # the content no longer hashes to the stored hash
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash: inserted, reordered or rehashed
    BAD_GENESIS = "bad_genesis"  # record 1 does not start from the genesis hash
    ANCHOR_MISSING = "anchor_missing"  # the kept head is beyond the log's end: records cut from the end
    ANCHOR_MISMATCH = "anchor_mismatch"  # the kept head's record has another hash: rewritten


class ChainProblem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(description="where: the record's sequence number (or the one expected there)")
    kind: ProblemKind
    expected: str
    found: str
    message: str = Field(description="one sentence for a person")


class VerifyResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    records_checked: int = Field(description="records found intact before the first problem (all of them if ok)")
    head: Anchor | None = Field(description="the last intact record (the log's head if ok); None if none")
    expected_head: Anchor | None = Field(None, description="the anchor checked, if one was given")
    problem: ChainProblem | None = None


class ChainVerifier:
    """Feed rows (the export form: dicts as `AuditRecord.model_dump(mode="json")` makes them) in seq order."""

    def __init__(self, *, expect_head: Anchor | None = None) -> None:
        self._expect = expect_head
        self._last: AuditRecord | None = None
        self._checked = 0
        self.problem: ChainProblem | None = None

    def feed(self, row: Mapping[str, Any]) -> bool:
        """Check the next row; False once a problem is found (feeding more changes nothing)."""
        if self.problem is None:
            self.problem = self._check(row)
        return self.problem is None

    def result(self) -> VerifyResult:
        if self.problem is None and self._expect is not None:
            self.problem = self._check_anchor_reached(self._expect)
        return VerifyResult(
            ok=self.problem is None,
            records_checked=self._checked,
            head=None if self._last is None else self._last.anchor,
            expected_head=self._expect,
            problem=self.problem,
        )

    def _check(self, row: Mapping[str, Any]) -> ChainProblem | None:
        want_seq = 1 if self._last is None else self._last.seq + 1
        raw_seq = row.get("seq")
        where = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else want_seq
        version = row.get("version")
        if version != RECORD_VERSION:
            return ChainProblem(
                seq=where, kind=ProblemKind.UNSUPPORTED_VERSION, expected=str(RECORD_VERSION), found=repr(version),
                message=f"record {where} has format version {version!r}; this gpuctl reads version {RECORD_VERSION}",
            )  # fmt: skip
        try:
            record = AuditRecord.model_validate(dict(row))
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "record"
            return ChainProblem(
                seq=where, kind=ProblemKind.UNREADABLE, expected="a record", found=f"{field}: {first['msg']}",
                message=f"record {where} is unreadable ({field}: {first['msg']}): it was altered outside gpuctl",
            )  # fmt: skip
        text = record.canonical_text()
        respelled = None if _canonical_or_none(_without_hash(row)) == text else _respelled_field(record, row)
        if respelled is not None:
            return ChainProblem(
                seq=where, kind=ProblemKind.EDITED, expected=_json(record.model_dump(mode="json")[respelled]),
                found=_json(row.get(respelled)),
                message=f"record {where}'s {respelled} is not written as gpuctl writes it: it was changed outside gpuctl",
            )  # fmt: skip
        if record.seq != want_seq:
            return self._sequence_problem(record.seq, want_seq)
        try:
            computed = hashlib.sha256(text.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            computed = "not valid Unicode"
        if computed != record.hash:
            return ChainProblem(
                seq=record.seq, kind=ProblemKind.EDITED, expected=computed, found=record.hash,
                message=f"record {record.seq} was changed after it was written: its content hashes to "
                f"{computed[:12]}…, its stored hash is {record.hash[:12]}…",
            )  # fmt: skip
        want_prev = GENESIS_HASH if self._last is None else self._last.hash
        if record.prev_hash != want_prev:
            return self._link_problem(record, want_prev)
        if self._expect is not None and record.seq == self._expect.seq and record.hash != self._expect.hash:
            return ChainProblem(
                seq=record.seq, kind=ProblemKind.ANCHOR_MISMATCH, expected=self._expect.hash, found=record.hash,
                message=f"record {record.seq} is not the one kept as the head ({self._expect.hash[:12]}…): "
                f"the log was rewritten up to it",
            )  # fmt: skip
        self._last = record
        self._checked += 1
        return None

    def _sequence_problem(self, seq: int, want: int) -> ChainProblem:
        if seq > want:
            gone = f"record {want}" if seq == want + 1 else f"records {want}–{seq - 1}"
            return ChainProblem(
                seq=want, kind=ProblemKind.MISSING, expected=str(want), found=str(seq),
                message=f"{gone} missing: the record after {want - 1 or 'the start'} is {seq}",
            )  # fmt: skip
        return ChainProblem(
            seq=seq, kind=ProblemKind.OUT_OF_ORDER, expected=str(want), found=str(seq),
            message=f"record {seq} appears where record {want} belongs: records were moved or copied",
        )  # fmt: skip

    def _link_problem(self, record: AuditRecord, want_prev: str) -> ChainProblem:
        if record.seq == 1:
            return ChainProblem(
                seq=1, kind=ProblemKind.BAD_GENESIS, expected=want_prev, found=record.prev_hash,
                message="record 1 does not start the chain (its prev_hash is not the genesis hash of 64 zeros)",
            )  # fmt: skip
        return ChainProblem(
            seq=record.seq, kind=ProblemKind.BROKEN_LINK, expected=want_prev, found=record.prev_hash,
            message=f"record {record.seq} does not follow record {record.seq - 1}: its prev_hash is "
            f"{record.prev_hash[:12]}…, record {record.seq - 1}'s hash is {want_prev[:12]}… "
            f"(a record inserted, reordered, or rewritten with a new hash)",
        )  # fmt: skip

    def _check_anchor_reached(self, anchor: Anchor) -> ChainProblem | None:
        if anchor.seq == 0:
            if anchor.hash == GENESIS_HASH:
                return None
            return ChainProblem(
                seq=0, kind=ProblemKind.ANCHOR_MISMATCH, expected=GENESIS_HASH, found=anchor.hash,
                message="an anchor with sequence 0 must carry the genesis hash (64 zeros)",
            )  # fmt: skip
        end = 0 if self._last is None else self._last.seq
        if end >= anchor.seq:
            return None
        return ChainProblem(
            seq=anchor.seq, kind=ProblemKind.ANCHOR_MISSING, expected=str(anchor), found=f"the log ends at record {end}",
            message=f"the log ends at record {end} but record {anchor.seq} was kept as a head: "
            f"records were removed from its end",
        )  # fmt: skip


def _respelled_field(record: AuditRecord, row: Mapping[str, Any]) -> str | None:
    """The first field whose stored value is not exactly what the record writes (say "seq": "3", or a
    time in another spelling): parsing forgives such edits, the check must not."""
    written = record.model_dump(mode="json")
    for name, value in written.items():
        try:
            if canonical_json(row.get(name)) != canonical_json(value):
                return name
        except (TypeError, ValueError):
            return name
    return None


def _without_hash(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "hash"}


def _canonical_or_none(value: Any) -> str | None:
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        return None


def _json(value: Any) -> str:
    return _canonical_or_none(value) or repr(value)


def verify_rows(rows: Iterable[Mapping[str, Any]], *, expect_head: Anchor | None = None) -> VerifyResult:
    """Verify rows in the export form (an exported file, read back) in the order given."""
    verifier = ChainVerifier(expect_head=expect_head)
    _feed(verifier, rows)
    return verifier.result()


async def verify(log: AuditBackend, *, expect_head: Anchor | None = None) -> VerifyResult:
    """Verify a whole log, page by page (memory stays flat however long the log)."""
    verifier = ChainVerifier(expect_head=expect_head)
    after: int | None = None
    while True:
        page = await log.rows(after_seq=after, limit=PAGE)
        intact = await asyncio.to_thread(_feed, verifier, page)  # hashing a page takes a while: off the loop
        if not intact or len(page) < PAGE:
            return verifier.result()
        after = page[-1]["seq"]


def _feed(verifier: ChainVerifier, rows: Iterable[Mapping[str, Any]]) -> bool:
    return all(verifier.feed(row) for row in rows)
