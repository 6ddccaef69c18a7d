"""`gpuctl audit list|show|verify|export|head`: read and check the audit log. These only read it.

`--json` prints records in their export form, one per line (RFC 8785 canonical
JSON, as hashed, plus `hash`): what `verify --file` re-verifies offline.
A log that fails verification raises AuditTampered (the CLI exits 5).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the command's own imports wait until it runs
    from gpuctl.audit import Anchor, AuditBackend, AuditRecord
    from gpuctl.config import Settings

LIST_LIMIT = 50


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = argparse.ArgumentParser(add_help=False)
    where = store.add_argument_group("audit log")
    where.add_argument("--audit", metavar="PATH|URL", help="the log (default ~/.local/state/gpuctl/audit.sqlite)")
    where.add_argument("--config", metavar="FILE", help="config file (default ~/.config/gpuctl/config.yaml)")
    store.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")

    audit = commands.add_parser("audit", help="the tamper-evident log of playbook runs")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[store], help="records, newest last")
    listing.add_argument("--run", metavar="RUN", help="only this run's records")
    listing.add_argument("--since", metavar="DURATION", help="only records this recent (30m, 2h, 7d)")
    listing.add_argument("--limit", type=_positive, default=LIST_LIMIT, metavar="N", help=f"at most N (default {LIST_LIMIT})")
    listing.add_argument("--json", action="store_true", help="records as JSON lines (export form)")

    show = actions.add_parser("show", parents=[store], help="one run, every record in full")
    show.add_argument("run", metavar="RUN")
    show.add_argument("--json", action="store_true", help="records as JSON lines (export form)")

    check = actions.add_parser("verify", parents=[store], help="check the hash chain (exit 5 if tampered)")
    check.add_argument("--expect-head", metavar="SEQ:HASH", help="also require this record, kept from `gpuctl audit head`")
    check.add_argument("--file", metavar="FILE", type=Path, help="verify an export (JSON lines) instead of the log")
    check.add_argument("--json", action="store_true", help="the verdict as JSON")

    export = actions.add_parser("export", parents=[store], help="every record, to re-verify offline")
    export.add_argument("--json", action="store_true", help="JSON lines, one record each (the only format)")

    head = actions.add_parser("head", parents=[store], help="print SEQ:HASH of the last record, to keep elsewhere")
    head.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings, *, out: TextIO) -> int:
    import asyncio

    handlers = {"list": _list, "show": _show, "verify": _verify, "export": _export, "head": _head}
    return asyncio.run(handlers[args.audit_command](args, settings, out))


def _open(settings: Settings) -> AuditBackend:
    from gpuctl.audit import open_audit

    return open_audit(settings.audit, create=False)


async def _list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from datetime import timedelta

    from gpuctl.clock import utcnow
    from gpuctl.config import parse_duration
    from gpuctl.errors import ConfigError
    from gpuctl.render.audit import render_records

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
    from gpuctl.errors import AuditError
    from gpuctl.render.audit import render_run

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
    from gpuctl.audit import verify, verify_rows
    from gpuctl.errors import AuditTampered
    from gpuctl.render.audit import render_verify

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
    from gpuctl.audit.verify import PAGE

    async with _open(settings) as log:
        after: int | None = None
        while True:
            page = await log.rows(after_seq=after, limit=PAGE)
            _write_json_lines(out, page)  # as stored, even damaged rows: evidence is exported, not judged
            if len(page) < PAGE:
                return 0
            after = page[-1]["seq"]


async def _head(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from gpuctl.audit import EMPTY_ANCHOR

    async with _open(settings) as log:
        record: AuditRecord | None = await log.head()
    anchor = EMPTY_ANCHOR if record is None else record.anchor
    if args.json:
        time = None if record is None else record.model_dump(mode="json")["time"]
        _write_json_lines(out, [{"seq": anchor.seq, "hash": anchor.hash, "time": time, "anchor": str(anchor)}])
    else:
        out.write(f"{anchor}\n")
    return 0


def _anchor(text: str | None) -> Anchor | None:
    from gpuctl.audit import Anchor
    from gpuctl.errors import ConfigError

    if text is None:
        return None
    try:
        return Anchor.parse(text)
    except ValueError as e:
        raise ConfigError(f"--expect-head: {e}") from e


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    import json

    from gpuctl.errors import AuditTampered, ConfigError

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


def _write_json_lines(out: TextIO, rows: Any) -> None:
    from gpuctl.audit.canonical import canonical_json

    for row in rows:
        out.write(canonical_json(row) + "\n")
