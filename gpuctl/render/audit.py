"""Text renderings of the audit log for `gpuctl audit`: a record table, one run in full, a verdict.

Plain text, fixed-width columns, no colour (terminals, pipes, tickets alike).
Times are UTC, as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import yaml

from gpuctl.audit.records import ApiCall, AuditRecord, EventKind
from gpuctl.audit.verify import VerifyResult
from gpuctl.identity import Requester
from gpuctl.render.summary import duration, table

DETAIL_WIDTH = 72
TAIL_NOTE = (
    "note: a chain cannot show records cut from its end; keep the head elsewhere (`gpuctl audit head`)\n"
    "      and check it with `gpuctl audit verify --expect-head SEQ:HASH`"
)


def when(time: datetime) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def actor_text(actor: Requester | None) -> str:
    if actor is None:
        return "gpuctl"
    return f"{actor.identity} via {actor.via}"


def payload_summary(record: AuditRecord, width: int = DETAIL_WIDTH) -> str:
    """One line: an API call as `METHOD path → status` (its Audit-ID is in `show`), else the top-level fields."""
    text = _api_call_line(record.payload, audit_id=False) if record.kind is EventKind.API_CALL else None
    if text is None:
        text = " ".join(f"{key}={_brief(value)}" for key, value in sorted(record.payload.items()))
    return text if len(text) <= width else text[: width - 1] + "…"


def render_records(records: Sequence[AuditRecord], *, more: bool = False) -> str:
    if not records:
        return "no records\n"
    rows = [
        (r.seq, when(r.time), r.run_id, r.kind.value, actor_text(r.actor), payload_summary(r))
        for r in records
    ]  # fmt: skip
    lines = table(["SEQ", "TIME (UTC)", "RUN", "KIND", "BY", "DETAIL"], rows, right=[True, False, False, False, False, False])
    if more:
        lines.append(f"(the last {len(records)} shown; --limit N for more)")
    return "\n".join(lines) + "\n"


def render_run(records: Sequence[AuditRecord]) -> str:
    """One run, every record with its payload in full (records in sequence order, at least one)."""
    first, last = records[0], records[-1]
    span = duration((last.time - first.time).total_seconds())
    state = f"{last.kind.value} (ended)" if last.ends_run else f"in flight, last: {last.kind.value}"
    lines = [
        f"run {first.run_id}: {len(records)} records, seq {first.seq}–{last.seq}, "
        f"{when(first.time)} → {when(last.time)} UTC ({span})",
        f"state: {state}",
        f"started by {actor_text(first.actor)}",
        "",
    ]
    width = max(len(r.kind.value) for r in records)
    for r in records:
        lines.append(f"#{r.seq:<5} {when(r.time)}  {r.kind.value:<{width}}  {actor_text(r.actor)}")
        headline = _api_call_line(r.payload) if r.kind is EventKind.API_CALL else None
        body: object = r.payload
        if headline:  # the call on one line, then whom it acted as, what came back, and the engine's additions
            lines.append(f"       {headline}")
            body = _api_call_rest(r.payload)
        if body:
            text = yaml.safe_dump(body, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100)
            lines.extend(f"       {line}" for line in text.rstrip("\n").splitlines())
    return "\n".join(lines) + "\n"


def render_verify(result: VerifyResult, location: str) -> str:
    """The verdict on an intact log (a broken one is reported as an error)."""
    if result.head is None:
        lines = [f"intact: the log is empty ({location})"]
    else:
        lines = [f"intact: {result.records_checked} records, chain unbroken ({location})", f"head {result.head}"]
    if result.expected_head is not None:
        lines.append(f"the kept head {result.expected_head.seq}:{result.expected_head.hash[:12]}… is in the log")
    else:
        lines.append(TAIL_NOTE)
    return "\n".join(lines) + "\n"


def _api_call(payload: Mapping[str, object]) -> ApiCall | None:
    """The call in an `api_call` payload (its other members, such as `step`, are the engine's)."""
    try:
        return ApiCall.model_validate({key: value for key, value in payload.items() if key in ApiCall.model_fields})
    except ValueError:
        return None


def _api_call_line(payload: Mapping[str, object], *, audit_id: bool = True) -> str | None:
    call = _api_call(payload)
    if call is None:
        return None
    line = f"{call.method} {call.path} → {call.status}"
    if audit_id and call.audit_id:
        line += f" audit-id {call.audit_id}"
    return line + (" (dry run)" if call.dry_run else "")


def _api_call_rest(payload: Mapping[str, object]) -> dict[str, object]:
    """What the call line leaves out: whom it acted as, the answer's reason and message, the engine's members."""
    rest: dict[str, object] = {k: v for k, v in payload.items() if k not in ApiCall.model_fields and v is not None}
    if payload.get("acting_as") is not None:
        rest["acting_as"] = payload["acting_as"]
    answer = {key: payload[key] for key in ("reason", "message") if payload.get(key) is not None}
    if answer:
        rest["result"] = answer
    return rest


def _brief(value: object) -> str:
    if isinstance(value, Mapping):
        return "{…}" if value else "{}"
    if isinstance(value, list):
        return f"[{len(value)}]"
    return "null" if value is None else str(value)
