"""Audit records: what a playbook step says happened, sealed into the hash chain.

`AuditEvent` is what a caller hands to a backend (run, kind, actor, payload);
the backend seals it into an `AuditRecord` by giving it the next sequence
number, the time and the previous record's hash. The canonical form the hash
covers is described in the package docstring (gpuctl/audit/__init__.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

from gpuctl.audit.canonical import canonical_bytes, canonical_json, check_integers
from gpuctl.identity import Identity, Requester

RECORD_VERSION: Final = 1
GENESIS_HASH = "0" * 64  # the prev_hash of record 1

Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")]


def format_time(value: datetime) -> str:
    """The canonical time: UTC, microseconds, 'Z' (2026-11-30T12:00:01.250000Z); sorts as text."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcTime = Annotated[
    AwareDatetime,
    AfterValidator(lambda t: t.astimezone(UTC)),
    PlainSerializer(format_time, return_type=str),
]


class EventKind(StrEnum):
    """What a record says happened. Payloads by convention (the engine fills them):

    requested          a playbook run was asked for: playbook, parameters, idempotency key
    planned            the plan (dry run): targets, actions, before/after, state fingerprint
    authorized         gpuctl's policy and the cluster's access reviews allowed it: which rule, which reviews
    denied             (ends the run) policy or RBAC refused: why
    approved           someone other than the requester approved (actor = the approver)
    rejected           (ends the run) the approver said no (actor = the approver)
    expired            (ends the run) no approval before the deadline
    execution_started  execution began from the plan (its fingerprint)
    api_call           one request to the API server: an `ApiCall`
    step               progress: an action done, a wait over, a retry
    verified           the verification's findings (pods gone, MIG state, quota, pool size)
    completed          (ends the run) executed and verified
    failed             (ends the run) what failed, what was left as it is
    interrupted        (ends the run) the process recording the run died mid-run (written at the next start)
    undo_started       undo began from the recorded before-state (reopens an ended run)
    undone             (ends the run) the before-state is back
    """

    REQUESTED = "requested"
    PLANNED = "planned"
    AUTHORIZED = "authorized"
    DENIED = "denied"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTION_STARTED = "execution_started"
    API_CALL = "api_call"
    STEP = "step"
    VERIFIED = "verified"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNDO_STARTED = "undo_started"
    UNDONE = "undone"


# A run whose last record is one of these has ended: nothing is in flight for it.
TERMINAL_KINDS: frozenset[EventKind] = frozenset(
    {
        EventKind.DENIED,
        EventKind.REJECTED,
        EventKind.EXPIRED,
        EventKind.COMPLETED,
        EventKind.FAILED,
        EventKind.INTERRUPTED,
        EventKind.UNDONE,
    }
)


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ApiCall(BaseModel):
    """One request to the API server, joinable to the cluster's own audit log by `audit_id`.

    The one model for it: gpuctl.playbooks.kubeapi makes one per request, and an `api_call`
    record's payload is its JSON dump (plus the `step` it belongs to, when the engine knows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: HttpMethod
    path: str = Field(description="path and query string as sent, e.g. /api/v1/namespaces/a/pods/p/eviction?dryRun=All")
    status: int = Field(description="HTTP status of the answer")
    audit_id: str | None = Field(description="the API server's Audit-ID response header (None if it sent none)")
    acting_as: Identity | None = Field(description="the impersonated identity; None = the connection's own credentials")
    dry_run: bool
    reason: str | None = Field(None, description="the Status reason of an error answer: Forbidden, Conflict, ...")
    message: str | None = Field(None, description="the Status message of an error answer")


class AuditEvent(BaseModel):
    """A record before it is sealed: the caller's part."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: RunId
    kind: EventKind
    actor: Requester | None = Field(None, description="who did this step, through which front end; None: gpuctl itself")
    payload: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("payload", mode="after")
    @classmethod
    def _canonical(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        check_integers(value)
        # Stored as it will read back (1.0 becomes 1, as RFC 8785 writes it), so a record equals its own reread.
        normal: dict[str, JsonValue] = json.loads(canonical_bytes(value))
        return normal


class Anchor(BaseModel):
    """A record's place in the chain, `SEQ:HASH`: keep one elsewhere to detect a log cut short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0, description="0 with the genesis hash: the empty log")
    hash: Hash

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = re.fullmatch(r"\s*(\d+):([0-9a-fA-F]{64})\s*", text)
        if not match:
            raise ValueError(f"{text!r} is not an anchor SEQ:HASH (as `gpuctl audit head` prints it)")
        return cls(seq=int(match[1]), hash=match[2].lower())

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


EMPTY_ANCHOR = Anchor(seq=0, hash=GENESIS_HASH)


class AuditRecord(BaseModel):
    """One sealed record. `model_dump(mode="json")` is its export form (the hashed fields + hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = RECORD_VERSION
    seq: int = Field(ge=1)
    time: UtcTime
    run_id: RunId
    kind: EventKind
    actor: Requester | None
    payload: dict[str, JsonValue]
    prev_hash: Hash
    hash: Hash

    @classmethod
    def seal(cls, event: AuditEvent, *, seq: int, time: datetime, prev_hash: str) -> AuditRecord:
        fields: dict[str, Any] = {**dict(event), "seq": seq, "time": time, "prev_hash": prev_hash}
        draft = cls.model_validate({**fields, "hash": GENESIS_HASH})
        return draft.model_copy(update={"hash": draft.computed_hash()})

    def hashed_fields(self) -> dict[str, JsonValue]:
        """The object the hash covers (version 1), built field by field so a model change cannot move it."""
        actor: JsonValue = None
        if self.actor is not None:
            identity = self.actor.identity
            actor = {
                "identity": {"user": identity.user, "groups": list(identity.groups)},
                "via": self.actor.via,
                "detail": self.actor.detail,
            }
        return {
            "version": self.version,
            "seq": self.seq,
            "time": format_time(self.time),
            "run_id": self.run_id,
            "kind": self.kind.value,
            "actor": actor,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
        }

    def canonical_text(self) -> str:
        """The RFC 8785 text of `hashed_fields()`: what the hash is taken of (as UTF-8)."""
        return canonical_json(self.hashed_fields())

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical_bytes(self.hashed_fields())).hexdigest()

    @property
    def anchor(self) -> Anchor:
        return Anchor(seq=self.seq, hash=self.hash)

    @property
    def ends_run(self) -> bool:
        return self.kind in TERMINAL_KINDS
