"""`gpuctl doctor`: its flags and what it prints. Exit codes: 0 (no finding at or above --fail-on, or no
--fail-on), 1 (findings at or above --fail-on); cluster and configuration errors keep the CLI's codes."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from gpuctl.config import Settings, parse_duration
from gpuctl.doctor.findings import Report, Severity
from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.run import check_selection, examine
from gpuctl.errors import ConfigError

EXIT_OK, EXIT_FINDINGS = 0, 1


def add_flags(doctor: argparse.ArgumentParser) -> None:
    group = doctor.add_argument_group("doctor")
    group.add_argument("--json", action="store_true", help="the report as JSON (`--schema` prints its schema)")
    group.add_argument("--schema", action="store_true", help="print the report's JSON schema and exit")
    group.add_argument(
        "--fail-on", choices=[s.value for s in Severity], metavar="SEVERITY",
        help=f"exit {EXIT_FINDINGS} when a finding at or above this severity exists (info, warning, critical)",
    )  # fmt: skip
    group.add_argument("--check", action="append", default=[], metavar="ID", help="only this check or family (repeat)")
    group.add_argument("--namespace", "-n", metavar="NS", help="only findings about objects in this namespace")
    group.add_argument(
        "--rules", action="append", default=[], type=Path, metavar="FILE",
        help="also check this Prometheus rule file or PrometheusRule (repeat); Prometheus's loaded rules are read "
        "from its API when --prometheus is set",
    )  # fmt: skip
    group.add_argument("--mig-pending-after", metavar="DURATION", help="report MIG reconfigurations pending longer (default 15m)")
    group.add_argument("--timeout", metavar="DURATION", help="wait this long for the first data (default 20s)")


def options_from(args: argparse.Namespace) -> DoctorOptions:
    try:
        pending = None if args.mig_pending_after is None else parse_duration(args.mig_pending_after)
        fields = {"mig_pending_after_s": pending} if pending is not None else {}
        return DoctorOptions(checks=check_selection(args.check), namespace=args.namespace, **fields)
    except (ValueError, ValidationError) as e:
        raise ConfigError(f"--mig-pending-after: {e}", hint="a duration like 15m or 1h") from e


def run_doctor_command(args: argparse.Namespace, settings: Settings, *, out: TextIO) -> int:
    from gpuctl.render.doctor import render_report

    if args.schema:
        out.write(json.dumps(Report.model_json_schema(), indent=2) + "\n")
        return EXIT_OK
    options = options_from(args)
    report = asyncio.run(examine(settings, options, rule_files=args.rules))
    out.write(report.model_dump_json(indent=2) + "\n" if args.json else render_report(report))
    return EXIT_FINDINGS if args.fail_on and report.fails(Severity(args.fail_on)) else EXIT_OK
