"""How a record is stored, whatever the backend: one row of text and integer columns, and the
queries that read them back.

Both backends keep the same columns with the same values (the JSON columns as canonical
text, the time as canonical text), so a row reads back exactly as it was hashed and an
export from either backend is byte for byte the same.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from gpuctl.audit.canonical import canonical_json
from gpuctl.audit.records import TERMINAL_KINDS, AuditRecord, format_time
from gpuctl.errors import AuditTampered

COLUMNS = ("version", "seq", "time", "run_id", "kind", "actor", "payload", "prev_hash", "hash")
ENDING_KINDS = tuple(sorted(k.value for k in TERMINAL_KINDS))


def stored_row(record: AuditRecord) -> tuple[Any, ...]:
    """The column values of a record, in COLUMNS order (JSON columns as canonical text)."""
    data = record.model_dump(mode="json")
    for name in ("actor", "payload"):
        data[name] = None if data[name] is None else canonical_json(data[name])
    return tuple(data[name] for name in COLUMNS)


def select_records(
    table: str,
    mark: str,
    *,
    run_id: str | None = None,
    after_seq: int | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> tuple[str, list[Any]]:
    """The SELECT for `records()`/`rows()` and its parameters; `mark` is the driver's placeholder (? or %s)."""
    where: list[str] = []
    params: list[Any] = []
    for condition, value in (("run_id =", run_id), ("seq >", after_seq), ("time >=", since)):
        if value is not None:
            where.append(f"{condition} {mark}")
            params.append(format_time(value) if isinstance(value, datetime) else value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {mark}"
        params.append(limit)
    return sql, params


def decode(values: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """A stored row (COLUMNS order) in the export form: the JSON columns parsed (left as text if they
    do not parse, for verify to report)."""
    row = dict(zip(COLUMNS, values))
    for name in ("actor", "payload"):
        text = row[name]
        if isinstance(text, str):
            try:
                row[name] = json.loads(text, parse_constant=_no_constants)
            except ValueError:
                pass  # verify reports it as unreadable
    return row


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def to_record(row: dict[str, Any]) -> AuditRecord:
    """A decoded row as a record; AuditTampered if it is not one."""
    try:
        return AuditRecord.model_validate(row)
    except ValidationError as e:
        raise AuditTampered(
            f"record {row.get('seq')} of the audit log is unreadable ({e.errors()[0]['msg']})",
            hint="run `gpuctl audit verify`",
        ) from e
