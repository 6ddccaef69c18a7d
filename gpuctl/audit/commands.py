"""`gpuctl audit list|show|verify|export|head`: read and check the audit log. These only read it.

`--json` prints records in their export form, one per line (RFC 8785 canonical
JSON, as hashed, plus `hash`): what `verify --file` re-verifies offline.
A log that fails verification raises AuditTampered (the CLI exits 5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from gpuctl.audit.backend import AuditBackend, open_audit
from gpuctl.audit.canonical import canonical_json
from gpuctl.audit.records import EMPTY_ANCHOR, Anchor
from gpuctl.audit.verify import PAGE, verify, verify_rows
from gpuctl.clock import utcnow
from gpuctl.config import Settings, parse_duration
from gpuctl.errors import AuditError, AuditTampered, ConfigError
from gpuctl.render.audit import render_records, render_run, render_verify


def run_audit_command(args: argparse.Namespace, settings: Settings, *, out: TextIO) -> int:
    """Runs the `audit` verb in `args`: AuditError if there is no log, AuditTampered if it is not intact."""
    verbs = {"list": _list, "show": _show, "verify": _verify, "export": _export, "head": _head}
    return asyncio.run(verbs[args.audit_command](args, settings, out))


def _open(settings: Settings) -> AuditBackend:
    return open_audit(settings.audit, create=False)


async def _list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    since = None
    if args.since is not None:
        try:
            since = utcnow() - timedelta(seconds=parse_duration(args.since))
        except ValueError as e:
            raise ConfigError(f"--since: {e}") from e
    async with _open(settings) as log:
        newest = await log.records(run_id=args.run, since=since, limit=args.limit + 1, newest_first=True)
    records = newest[: args.limit][::-1]
    if args.json:
        _write_json_lines(out, (r.model_dump(mode="json") for r in records))
    else:
        out.write(render_records(records, more=len(newest) > args.limit))
    return 0


async def _show(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    async with _open(settings) as log:
        records = await log.records(run_id=args.run)
        if not records:
            raise AuditError(f"no run {args.run!r} in the audit log {log.location}", hint="`gpuctl audit list` shows runs")
    if args.json:
        _write_json_lines(out, (r.model_dump(mode="json") for r in records))
    else:
        out.write(render_run(records))
    return 0


async def _verify(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    anchor = _anchor(args.expect_head)
    if args.file is not None:
        location = str(args.file)
        result = verify_rows(_read_export(args.file), expect_head=anchor)
    else:
        async with _open(settings) as log:
            location = log.location
            result = await verify(log, expect_head=anchor)
    if args.json:
        out.write(result.model_dump_json(indent=2) + "\n")
    elif result.ok:
        out.write(render_verify(result, location))
    if result.problem is not None:
        raise AuditTampered(
            f"audit log {location} is not intact: {result.problem.message} "
            f"({result.records_checked} records verified before that)",
            hint="keep a copy of it as evidence; --json shows expected and found values in full",
        )
    return 0


async def _export(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    async with _open(settings) as log:
        after: int | None = None
        while True:
            page = await log.rows(after_seq=after, limit=PAGE)
            _write_json_lines(out, page)  # as stored, even damaged rows: evidence is exported, not judged
            if len(page) < PAGE:
                return 0
            after = page[-1]["seq"]


async def _head(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    async with _open(settings) as log:
        record = await log.head()
    anchor = EMPTY_ANCHOR if record is None else record.anchor
    if args.json:
        time = None if record is None else record.model_dump(mode="json")["time"]
        _write_json_lines(out, [{"seq": anchor.seq, "hash": anchor.hash, "time": time, "anchor": str(anchor)}])
    else:
        out.write(f"{anchor}\n")
    return 0


def _anchor(text: str | None) -> Anchor | None:
    if text is None:
        return None
    try:
        return Anchor.parse(text)
    except ValueError as e:
        raise ConfigError(f"--expect-head: {e}") from e


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--file: cannot read {path}: {e.strerror}") from e
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise AuditTampered(f"{path} line {number} is not a JSON record ({e})") from e
            if not isinstance(row, dict):
                raise AuditTampered(f"{path} line {number} is not a JSON object")
            yield row


def _write_json_lines(out: TextIO, rows: Iterable[Any]) -> None:
    for row in rows:
        out.write(canonical_json(row) + "\n")
