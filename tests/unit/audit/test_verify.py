"""Chain verification on rows in the export form: each kind of damage, anchors, and a property:
any single-field change to any record is detected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpuctl.audit import EMPTY_ANCHOR, Anchor, AuditEvent, AuditRecord, EventKind, ProblemKind, verify_rows
from gpuctl.audit.canonical import MAX_SAFE_INTEGER, canonical_json
from gpuctl.identity import Identity, Requester

from .factories import run_events, seal_chain, ticking

Row = dict[str, Any]


def rows_of(records: list[AuditRecord]) -> list[Row]:
    return [r.model_dump(mode="json") for r in records]


def good_rows() -> list[Row]:
    return rows_of(seal_chain(run_events()))


def problem_of(rows: list[Row], **kwargs: Any) -> tuple[ProblemKind, int]:
    result = verify_rows(rows, **kwargs)
    assert not result.ok and result.problem is not None
    return result.problem.kind, result.problem.seq


def test_intact_chain() -> None:
    rows = good_rows()
    result = verify_rows(rows)
    assert result.ok and result.records_checked == 7 and result.problem is None
    assert result.head == Anchor(seq=7, hash=rows[-1]["hash"])


def test_empty_log_is_intact_and_matches_the_empty_anchor() -> None:
    assert verify_rows([]).ok and verify_rows([]).head is None
    assert verify_rows([], expect_head=EMPTY_ANCHOR).ok


def test_edited_payload_time_actor_kind() -> None:
    for field, value in [
        ("payload", {"playbook": "something-else"}),
        ("time", "2026-11-30T12:00:00.000001Z"),
        ("actor", None),
        ("kind", "denied"),
        ("run_id", "another-run"),
    ]:
        rows = good_rows()
        rows[2][field] = value
        result = verify_rows(rows)
        assert problem_of(rows) == (ProblemKind.EDITED, 3), field
        assert result.records_checked == 2 and result.head is not None and result.head.seq == 2


def test_problem_says_expected_and_found() -> None:
    rows = good_rows()
    rows[2]["payload"] = {"comment": "approved by nobody"}
    problem = verify_rows(rows).problem
    assert problem is not None and problem.found == rows[2]["hash"]
    assert problem.expected == AuditRecord.model_validate(rows[2]).computed_hash()
    assert "record 3 was changed after it was written" in problem.message


def test_deleted_records_leave_a_gap() -> None:
    rows = good_rows()
    assert problem_of(rows[:2] + rows[4:]) == (ProblemKind.MISSING, 3)
    assert problem_of(rows[1:]) == (ProblemKind.MISSING, 1)
    assert "records 3–4 missing" in str(verify_rows(rows[:2] + rows[4:]).problem)


def test_reordered_and_repeated_records() -> None:
    rows = good_rows()
    assert problem_of([rows[0], rows[2], rows[1], *rows[3:]]) == (ProblemKind.MISSING, 2)
    assert problem_of([rows[0], rows[1], rows[1], *rows[2:]]) == (ProblemKind.OUT_OF_ORDER, 2)
    swapped = good_rows()  # sequence numbers swapped in place (what an UPDATE does)
    swapped[2]["seq"], swapped[3]["seq"] = 4, 3
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert problem_of(swapped) == (ProblemKind.EDITED, 3)


def test_forged_record_with_recomputed_hash_but_wrong_prev() -> None:
    rows = good_rows()
    forged = AuditRecord.seal(
        AuditEvent(run_id="reclaim-7f3a", kind=EventKind.UNDONE), seq=8, time=datetime.now(UTC), prev_hash="ab" * 32
    )
    assert problem_of([*rows, forged.model_dump(mode="json")]) == (ProblemKind.BROKEN_LINK, 8)


def test_inserted_record_renumbering_the_rest() -> None:
    records = seal_chain(run_events())
    forged = AuditRecord.seal(
        AuditEvent(run_id="reclaim-7f3a", kind=EventKind.APPROVED), seq=3, time=records[1].time, prev_hash=records[1].hash
    )
    shifted = [r.model_copy(update={"seq": r.seq + 1}) for r in records[2:]]
    assert problem_of(rows_of([*records[:2], forged, *shifted])) == (ProblemKind.EDITED, 4)


def test_broken_genesis() -> None:
    records = seal_chain(run_events())
    first = AuditRecord.seal(AuditEvent(run_id="r", kind=EventKind.STEP), seq=1, time=records[0].time, prev_hash="11" * 32)
    assert problem_of(rows_of([first, *records[1:]])) == (ProblemKind.BAD_GENESIS, 1)


def test_rehashed_tail_passes_the_chain_but_not_the_anchor() -> None:
    """Someone who rewrites a record and re-seals everything after it leaves a valid chain:
    only a head kept elsewhere shows it."""
    original = seal_chain(run_events())
    kept = original[-1].anchor
    events = run_events()
    events[2] = AuditEvent(run_id="reclaim-7f3a", kind=EventKind.APPROVED, payload={"comment": "forged approval"})
    rewritten = rows_of(seal_chain(events))
    assert verify_rows(rewritten).ok
    assert problem_of(rewritten, expect_head=kept) == (ProblemKind.ANCHOR_MISMATCH, 7)


def test_truncated_tail_passes_the_chain_but_not_the_anchor() -> None:
    rows = good_rows()
    kept = Anchor(seq=7, hash=rows[-1]["hash"])
    assert verify_rows(rows[:5]).ok
    assert problem_of(rows[:5], expect_head=kept) == (ProblemKind.ANCHOR_MISSING, 7)
    assert verify_rows(rows, expect_head=kept).ok
    assert verify_rows(rows, expect_head=Anchor(seq=4, hash=rows[3]["hash"])).ok  # grown since: fine
    assert problem_of(rows, expect_head=Anchor(seq=0, hash="ab" * 32)) == (ProblemKind.ANCHOR_MISMATCH, 0)


def test_unreadable_and_unknown_version() -> None:
    rows = good_rows()
    rows[1]["kind"] = "teleported"
    assert problem_of(rows) == (ProblemKind.UNREADABLE, 2)
    rows = good_rows()
    rows[1]["payload"] = "{not json"
    assert problem_of(rows) == (ProblemKind.UNREADABLE, 2)
    rows = good_rows()
    rows[3]["version"] = 2
    assert problem_of(rows) == (ProblemKind.UNSUPPORTED_VERSION, 4)


# --- property: any single-field mutation of any record is detected --------------------------------

json_leaves = st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(max_size=8)
json_leaves |= st.floats(allow_nan=False, allow_infinity=False)
payloads = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_size=4,
)
requesters = st.builds(
    Requester,
    identity=st.builds(
        Identity, user=st.text(min_size=1, max_size=8), groups=st.lists(st.text(max_size=5), max_size=2).map(tuple)
    ),
    via=st.sampled_from(["cli", "tui", "slack", "alert", "executor"]),
    detail=st.none() | st.text(max_size=8),
)
run_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,12}", fullmatch=True)
events = st.builds(AuditEvent, run_id=run_ids, kind=st.sampled_from(EventKind), actor=st.none() | requesters, payload=payloads)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
)
hashes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "version": st.integers() | st.none() | st.text(max_size=3),
    "seq": st.integers(min_value=-3, max_value=50),
    "time": times | st.text(max_size=5),
    "run_id": run_ids | st.text(max_size=5),
    "kind": st.sampled_from([*EventKind, "bogus"]).map(str),
    "actor": (st.none() | requesters).map(lambda r: None if r is None else r.model_dump(mode="json")),
    "payload": payloads | st.text(max_size=3),
    "prev_hash": hashes | st.text(max_size=5),
    "hash": hashes | st.text(max_size=5),
}


@settings(max_examples=200, deadline=None)
@given(
    chain_events=st.lists(events, min_size=1, max_size=6),
    data=st.data(),
)
def test_any_single_field_mutation_is_detected(chain_events: list[AuditEvent], data: st.DataObject) -> None:
    rows = rows_of(seal_chain(chain_events, clock=ticking(step=timedelta(milliseconds=7))))
    assert verify_rows(rows).ok
    index = data.draw(st.integers(0, len(rows) - 1), label="record")
    field = data.draw(st.sampled_from(sorted(MUTATIONS)), label="field")
    new = data.draw(MUTATIONS[field], label="new value")
    old = rows[index][field]
    # A different value, not a different spelling of the same JSON value (1 and 1.0 are one number).
    assume(type(new) is not type(old) or canonical_json(new) != canonical_json(old))
    rows[index] = {**rows[index], field: new}
    assert not verify_rows(rows).ok
