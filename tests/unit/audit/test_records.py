"""The record format: a fixed vector, the fields the hash covers, what an event accepts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gpuctl.audit import GENESIS_HASH, TERMINAL_KINDS, Anchor, AuditEvent, AuditRecord, EventKind
from gpuctl.audit.canonical import canonical_json
from gpuctl.identity import Identity, Requester

from .factories import USER_A

# Changing any byte here changes every hash ever written: that needs a new record version, not an edit.
KNOWN_CANONICAL = (
    '{"actor":{"detail":"laptop-7","identity":{"groups":["team-a"],"user":"user-a"},"via":"cli"},'
    '"kind":"planned","payload":{"big":1e+21,"gpus":4,"note":"idle since Friday ☕","playbook":"reclaim-idle-gpus",'
    '"ratio":0.5,"targets":[{"namespace":"team-a","pod":"train-0"}]},'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","run_id":"reclaim-7f3a",'
    '"seq":1,"time":"2026-11-30T12:00:01.250000Z","version":1}'
)
KNOWN_HASH = "b667f1b426b57e45930a7a8aa3eb04e25b867613244cc4c6696d735d893a7e4e"


def known_record() -> AuditRecord:
    event = AuditEvent(
        run_id="reclaim-7f3a",
        kind=EventKind.PLANNED,
        actor=USER_A,
        payload={
            "playbook": "reclaim-idle-gpus", "gpus": 4, "ratio": 0.5, "note": "idle since Friday ☕", "big": 1e21,
            "targets": [{"pod": "train-0", "namespace": "team-a"}],
        },
    )  # fmt: skip
    return AuditRecord.seal(event, seq=1, time=datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC), prev_hash=GENESIS_HASH)


def test_known_vector() -> None:
    record = known_record()
    assert canonical_json(record.hashed_fields()) == KNOWN_CANONICAL
    assert hashlib.sha256(KNOWN_CANONICAL.encode()).hexdigest() == KNOWN_HASH == record.hash


def test_export_form_is_the_hashed_fields_plus_hash_and_reads_back_equal() -> None:
    record = known_record()
    exported = record.model_dump(mode="json")
    assert exported == {**record.hashed_fields(), "hash": KNOWN_HASH}
    again = AuditRecord.model_validate(exported)
    assert again == record and again.computed_hash() == KNOWN_HASH


def test_actor_fields_are_all_hashed() -> None:
    """Version 1 hashes the actor field by field: a new Requester/Identity field would go unhashed,
    so adding one must come with a new record version (and this test's update)."""
    assert set(Requester.model_fields) == {"identity", "via", "detail"}
    assert set(Identity.model_fields) == {"user", "groups"}
    hashed = known_record().hashed_fields()["actor"]
    assert hashed == USER_A.model_dump(mode="json")


def test_time_is_utc_with_microseconds_whatever_zone_it_came_in() -> None:
    plus_two = timezone(timedelta(hours=2))
    record = AuditRecord.seal(
        AuditEvent(run_id="r", kind=EventKind.STEP), seq=1, time=datetime(2026, 11, 30, 14, 0, tzinfo=plus_two),
        prev_hash=GENESIS_HASH,
    )  # fmt: skip
    assert record.hashed_fields()["time"] == "2026-11-30T12:00:00.000000Z"
    with pytest.raises(ValidationError, match="timezone"):
        AuditRecord.seal(AuditEvent(run_id="r", kind=EventKind.STEP), seq=1, time=datetime(2026, 11, 30), prev_hash=GENESIS_HASH)


def test_payload_is_stored_as_it_reads_back() -> None:
    event = AuditEvent(run_id="r", kind=EventKind.STEP, payload={"n": 3.0, "t": [1.0, 2.5]})
    assert event.payload == {"n": 3, "t": [1, 2.5]}
    assert isinstance(event.payload["n"], int) and isinstance(event.payload["t"][0], int)  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"run_id": ""}, "run_id"),
        ({"run_id": "has space"}, "run_id"),
        ({"kind": "finished"}, "kind"),
        ({"payload": {"n": 2**60}}, "store it as a string"),
        ({"payload": {"x": float("nan")}}, "not a JSON number"),
        ({"payload": {"x": "\ud800"}}, "not valid Unicode"),
        ({"payload": {"x": object()}}, "payload"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_events_are_refused(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        AuditEvent.model_validate({"run_id": "r", "kind": "step", **fields})


def test_terminal_kinds() -> None:
    assert {k.value for k in TERMINAL_KINDS} == {
        "denied", "rejected", "expired", "completed", "failed", "interrupted", "undone",
    }  # fmt: skip
    # A run resting between processes (awaiting approval) or mid-execution has not ended.
    for kind in ("requested", "planned", "authorized", "approved", "execution_started", "api_call", "step", "verified"):
        assert EventKind(kind) not in TERMINAL_KINDS


def test_anchor_parse() -> None:
    anchor = Anchor.parse(f" 41:{'AB' * 32} ")
    assert anchor.seq == 41 and anchor.hash == "ab" * 32 and str(anchor) == f"41:{'ab' * 32}"
    for bad in ("41", f"x:{'ab' * 32}", f"-1:{'ab' * 32}", "41:abc", f"41:{'g' * 64}"):
        with pytest.raises(ValueError, match="not an anchor SEQ:HASH"):
            Anchor.parse(bad)
