"""The `gpuctl` command: `snapshot` (one-shot), `top` (the live TUI), `playbook` (remediation playbooks),
`executor` (carries out approved runs), `audit` (the audit log), `bot serve` (the Slack bot), `serve`
(the in-cluster process: bot + executor, leader-elected), `doctor` (check the cluster against GPU practices).

Exit codes:
  0    ok (a run that needs an approval was submitted; a plan with nothing to do; doctor: no finding
       at or above --fail-on)
  1    `gpuctl doctor --fail-on SEVERITY`: findings at or above it; other gpuctl error: a source
       stopped on an unexpected error (SourceStopped: the answer would come from frozen data, so
       nothing is printed but the error); a run that executed but failed or did not verify
  2    bad arguments or configuration (a bad playbook parameter, policy or playbook file)
  3    cluster unreachable or unauthorised (also when the first data did not arrive in time),
       a CRD gpuctl needs not installed
  4    denied: gpuctl's policy (PolicyDenied) or the cluster's RBAC for the acting identity (403)
  5    the audit log is not intact (a record edited, removed, reordered or forged: `gpuctl audit verify`)
  6    refused, nothing changed: the kill switch is engaged, a target is locked by another run,
       the plan is stale or blocked, or the run is in no state to do that (not approved, expired...)
  130  interrupted
Errors print one line (`gpuctl: error: ...`), never a traceback; -v shows the
sources' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gpuctl import __version__
from gpuctl.config import Settings, load_settings
from gpuctl.doctor.commands import add_flags as doctor_flags
from gpuctl.errors import (
    AuditTampered,
    ClusterError,
    ConfigError,
    Forbidden,
    GpuctlError,
    LockHeld,
    NotReady,
    PolicyDenied,
    RunRefused,
)
from gpuctl.playbooks.commands import add_parsers as playbook_parsers
from gpuctl.playbooks.commands import add_replica_flags

if TYPE_CHECKING:
    from gpuctl.playbooks.registry import Registry
    from gpuctl.sources.base import Source

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_CLUSTER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_DENIED, EXIT_TAMPERED, EXIT_REFUSED = 4, 5, 6

# argparse dest -> Settings field, for the flags shared by every command.
_SETTING_FLAGS = {
    "config": "config_file", "kubeconfig": "kubeconfig", "context": "context", "in_cluster": "in_cluster",
    "prometheus": "prometheus_url", "prometheus_token": "prometheus_token",
    "prometheus_username": "prometheus_username", "prometheus_password": "prometheus_password",
    "prometheus_ca_file": "prometheus_ca_file", "prometheus_insecure": "prometheus_insecure",
    "metrics_selector": "metrics_selector", "gpu_stale_after": "gpu_stale_after_s",
    "refresh": "refresh_s", "idle_threshold": "idle_threshold_pct", "idle_window": "idle_window_s",
    "pool_label": "pool_label", "demo": "demo", "demo_seed": "demo_seed", "demo_scale": "demo_scale",
    "local": "local", "timeout": "ready_timeout_s", "playbooks_dir": "playbooks_dir", "policy": "policy",
    "audit": "audit", "gpuctl_namespace": "gpuctl_namespace",
    "host": "bot_host", "port": "bot_port", "identity_map": "slack_identity_map",
    "alert_rules": "alert_rules", "slack_api_url": "slack_api_url",
    "replica_name": "replica_name", "leader_lease": "leader_lease_s", "leader_renew_deadline": "leader_renew_deadline_s",
    "leader_retry": "leader_retry_s", "lock_lease": "lock_lease_s", "health_port": "health_port",
}  # fmt: skip


def _common(parser: argparse.ArgumentParser) -> None:
    # Defaults are None: "not given", so GPUCTL_* variables and the config file can fill in.
    src = parser.add_argument_group("cluster")
    src.add_argument("--config", metavar="FILE", help="config file (default ~/.config/gpuctl/config.yaml)")
    src.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default $KUBECONFIG, ~/.kube/config)")
    src.add_argument("--context", help="kubeconfig context")
    src.add_argument("--in-cluster", action="store_true", default=None, help="use the pod's service account")
    src.add_argument("--demo", action="store_true", default=None, help="a simulated cluster, nothing to connect to")
    src.add_argument("--demo-seed", type=int, metavar="N")
    src.add_argument("--demo-scale", type=int, metavar="N", help="simulated fleet size multiplier")
    src.add_argument("--local", action="store_true", default=None, help="this machine's GPUs via NVML")
    prom = parser.add_argument_group("metrics")
    prom.add_argument("--prometheus", "--prometheus-url", dest="prometheus", metavar="URL", help="Prometheus API root")
    prom.add_argument("--prometheus-token", metavar="TOKEN", help="bearer token (prefer GPUCTL_PROMETHEUS_TOKEN)")
    prom.add_argument("--prometheus-username", metavar="USER")
    prom.add_argument("--prometheus-password", metavar="PASS", help="prefer GPUCTL_PROMETHEUS_PASSWORD")
    prom.add_argument("--prometheus-ca-file", metavar="FILE")
    prom.add_argument("--prometheus-insecure", action="store_true", default=None, help="skip TLS verification")
    prom.add_argument(
        "--metrics-selector", metavar="MATCHERS", help='added to every metrics query, e.g. \'cluster="prod-a"\''
    )
    prom.add_argument(
        "--gpu-stale-after", metavar="DURATION", help="a GPU whose readings did not move for this long is stale (default 2m)"
    )
    tune = parser.add_argument_group("behaviour")
    tune.add_argument("--refresh", metavar="DURATION", help="metrics refresh interval (default 15s)")
    tune.add_argument("--idle-threshold", type=float, metavar="PCT", help="idle below this utilisation (default 5)")
    tune.add_argument("--idle-window", metavar="DURATION", help="idle after this long under it (default 30m)")
    tune.add_argument("--pool-label", metavar="LABEL", help="node label that names the pool")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuctl", description="Watch and operate Kubernetes GPU clusters.")
    parser.add_argument("--version", action="version", version=f"gpuctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    snap = commands.add_parser("snapshot", help="print the cluster's GPU picture once and exit")
    _common(snap)
    snap.add_argument("--json", action="store_true", help="the full Snapshot as JSON")
    snap.add_argument("--schema", action="store_true", help="print the Snapshot JSON schema and exit")
    snap.add_argument("--timeout", metavar="DURATION", help="wait this long for the first data (default 20s)")

    top = commands.add_parser("top", help="the live terminal UI")
    _common(top)
    doctor = commands.add_parser("doctor", help="check the cluster against GPU practices (read-only)")
    _common(doctor)
    doctor_flags(doctor)
    playbook_parsers(commands)
    _audit_parser(commands)
    _bot_parser(commands)
    _serve_parser(commands)
    return parser


SERVE_HELP = """\
The bot and the executor in one process (either can be switched off). Every
replica answers Slack and the probes; only the leader executes runs and handles
Alertmanager webhooks (a follower answers /alertmanager with 503).

Leader election: the coordination.k8s.io/v1 Lease "gpuctl-leader" in gpuctl's
namespace (--gpuctl-namespace / GPUCTL_GPUCTL_NAMESPACE; in a pod set it from
metadata.namespace), holderIdentity = --name / GPUCTL_REPLICA_NAME (default the
host name, which in a pod is the pod's name; set it from metadata.name). The
service account needs get, create, update, patch and delete on leases in that
namespace (leader and per-target run Leases).

HTTP: the bot on --port (default 3000): POST /slack/events, POST /alertmanager,
GET /healthz, GET /metrics. Probes on --health-port (default 8081; same --host):
GET /healthz (liveness: 200 while the process serves) and GET /readyz
(readiness: 503 until the API server answers and the bot serves); both say the
role (leader, follower), the leader's name and whether the cluster is
reachable. GET /metrics there: gpuctl_serve_leader, gpuctl_serve_ready,
gpuctl_serve_runs_executing.

Timing: --leader-lease 15s, --leader-renew-deadline 10s, --leader-retry 2s
(GPUCTL_LEADER_LEASE_S, _RENEW_DEADLINE_S, _RETRY_S); a replica that could not
renew for the renew deadline stops executing before the Lease can expire.
--lock-lease 60 (GPUCTL_LOCK_LEASE_S): a run whose replica died is marked
Interrupted by the leader once its target Leases expire, never executed again.

Secrets come from GPUCTL_SLACK_BOT_TOKEN, GPUCTL_SLACK_SIGNING_SECRET (HTTP mode)
and GPUCTL_SLACK_APP_TOKEN (--socket-mode), or the config file; never from flags.
The other flags but --no-bot, --no-executor and --socket-mode have a GPUCTL_*
variable and a config file key (gpuctl/config.py).
SIGTERM or Ctrl-C: no new runs, runs in progress finish, the Lease is vacated, exit 0
(130 after Ctrl-C); a second signal stops at once.
"""


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="the in-cluster process: Slack bot + executor, leader-elected",
        description=SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common(serve)
    parts = serve.add_argument_group("parts")
    parts.add_argument("--no-bot", dest="bot", action="store_false", help="no Slack bot (executor and probes only)")
    parts.add_argument("--no-executor", dest="executor", action="store_false",
                       help="no executor and no election: the bot handles alerts itself (run one such replica)")  # fmt: skip
    _bot_flags(serve)
    serve.add_argument("--audit", metavar="PATH|URL", help="the audit log (default ~/.local/state/gpuctl/audit.sqlite)")
    serve.add_argument("--gpuctl-namespace", metavar="NS", help="where PlaybookRuns, Leases and the kill switch live")
    serve.add_argument("--health-port", type=int, metavar="N", help="port of /healthz and /readyz (default 8081)")
    add_replica_flags(serve)


def _bot_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bot = commands.add_parser("bot", help="the Slack bot: serve")
    verbs = bot.add_subparsers(dest="bot_command", metavar="VERB", required=True)
    serve = verbs.add_parser(
        "serve",
        help="answer /gpu commands and Alertmanager webhooks",
        description="Secrets come from GPUCTL_SLACK_BOT_TOKEN, GPUCTL_SLACK_SIGNING_SECRET (HTTP mode) and "
        "GPUCTL_SLACK_APP_TOKEN (--socket-mode), or the config file; never from flags.",
    )
    _common(serve)
    _bot_flags(serve)


def _bot_flags(serve: argparse.ArgumentParser) -> None:
    slack = serve.add_argument_group("bot")
    slack.add_argument("--port", type=int, metavar="N", help="HTTP port (default 3000)")
    slack.add_argument("--host", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    slack.add_argument("--socket-mode", action="store_true", help="receive Slack requests over Socket Mode (app token)")
    slack.add_argument("--identity-map", metavar="FILE", help="Slack users and user groups -> Kubernetes users and groups")
    slack.add_argument("--alert-rules", metavar="FILE", help="Alertmanager alerts -> playbooks")
    slack.add_argument("--policy", metavar="FILE", help="gpuctl policy: who may view, run and approve")
    slack.add_argument("--playbooks-dir", metavar="DIR", help="site playbooks in addition to the built-in ones")
    slack.add_argument("--slack-api-url", metavar="URL", help="Slack Web API base URL (default https://slack.com/api/)")


def _audit_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the tamper-evident log of playbook runs: list, show, verify, export, head")
    verbs = audit.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="the newest records (oldest first), one line each")
    listing.add_argument("--run", metavar="RUN", help="only this run's records")
    listing.add_argument("--since", metavar="DURATION", help="only records this recent (30m, 2h, 7d)")
    listing.add_argument("--limit", type=_positive, default=50, metavar="N", help="the newest N (default 50)")
    show = verbs.add_parser("show", help="one run, every record in full")
    show.add_argument("run", metavar="RUN")
    check = verbs.add_parser("verify", help=f"check the hash chain (exit {EXIT_TAMPERED} if it is not intact)")
    check.add_argument("--expect-head", metavar="SEQ:HASH", help="also require this record, kept from `gpuctl audit head`")
    check.add_argument("--file", metavar="FILE", type=Path, help="verify an export (JSON lines) instead of the log")
    export = verbs.add_parser("export", help="every record as JSON lines, with all it takes to re-verify offline")
    head = verbs.add_parser("head", help="SEQ:HASH of the last record, to keep somewhere else")
    for verb in (listing, show, check, export, head):
        verb.add_argument("--audit", metavar="PATH|URL", help="the log: a SQLite file, or postgresql://user@host/db for a shared one (default ~/.local/state/gpuctl/audit.sqlite)")
        verb.add_argument("--config", metavar="FILE", help="config file (default ~/.config/gpuctl/config.yaml)")
        verb.add_argument("--json", action="store_true", help="records as JSON lines (export form); verify: the verdict")
        verb.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def settings_from(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {field: getattr(args, dest, None) for dest, field in _SETTING_FLAGS.items()}
    return load_settings(**flags)


def _configure_logging(verbosity: int) -> None:
    level = logging.ERROR if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


async def take_snapshot(settings: Settings, *, as_json: bool, out: TextIO, sources: Sequence[Source] | None = None) -> int:
    from gpuctl.render.summary import render_summary
    from gpuctl.service import open_cluster
    from gpuctl.trace import Trace

    trace = Trace.open(settings.trace_file)
    try:
        async with open_cluster(settings, sources=sources, publishing=False) as cluster:
            snapshot = await cluster.wait_ready(settings.ready_timeout_s, fail_fast=True)
            trace.event("snapshot_ready", nodes=len(snapshot.nodes), pods=len(snapshot.pods), gpus=len(snapshot.gpus))
        trace.event("cluster_closed")
        out.write(snapshot.model_dump_json(indent=2) + "\n" if as_json else render_summary(snapshot))
        out.flush()
        trace.event("snapshot_written")
    finally:
        trace.close()
    return EXIT_OK


def run_top(settings: Settings) -> int:
    import gpuctl.tui

    return int(gpuctl.tui.run(settings))


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sources: Sequence[Source] | None = None,
    registry: Registry | None = None,
) -> int:
    """Run one command; returns the exit code. `sources` replaces what the settings ask for, `registry`
    the playbooks' logic (tests)."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version exit 0; bad arguments exit 2 after printing usage
        return int(e.code or 0)
    _configure_logging(args.verbose)
    try:
        if args.command == "snapshot" and args.schema:
            from gpuctl.model import Snapshot

            out.write(json.dumps(Snapshot.model_json_schema(), indent=2) + "\n")
            return EXIT_OK
        settings = settings_from(args)
        if args.command == "playbook":
            from gpuctl.playbooks.commands import run_playbook_command

            return run_playbook_command(args, settings, out=out, registry=registry)
        if args.command == "executor":
            from gpuctl.playbooks.commands import run_executor_command

            return run_executor_command(args, settings)
        if args.command == "audit":
            from gpuctl.audit.commands import run_audit_command

            return run_audit_command(args, settings, out=out)
        from gpuctl.memory import limit_arenas
        from gpuctl.service import tune_gc

        tune_gc()
        # Before any worker thread starts: they share arenas, and freed pages serve the next refresh. One for the
        # long-running picture (its memory), two where start-up speed counts (gpuctl.memory).
        limit_arenas(1 if args.command == "top" else 2)
        if args.command == "doctor":
            from gpuctl.doctor.commands import run_doctor_command

            return run_doctor_command(args, settings, out=out)
        if args.command == "snapshot":
            return asyncio.run(take_snapshot(settings, as_json=args.json, out=out, sources=sources))
        if args.command == "bot":
            from gpuctl.bot.server import serve
            from gpuctl.service import tune_switching

            tune_switching()
            asyncio.run(serve(settings, socket_mode=args.socket_mode, out=out, work_nice=settings.bot_work_nice))
            return EXIT_OK
        if args.command == "serve":
            from gpuctl.serve.replica import serve as serve_replica
            from gpuctl.service import tune_switching

            if not args.bot and not args.executor:
                raise ConfigError("--no-bot and --no-executor leave nothing to serve")
            tune_switching()
            asyncio.run(serve_replica(settings, bot=args.bot, executor=args.executor, socket_mode=args.socket_mode,
                                      out=out, registry=registry, work_nice=settings.bot_work_nice))  # fmt: skip
            return EXIT_OK
        return run_top(settings)
    except ConfigError as e:
        err.write(f"gpuctl: error: {e}\n")
        return EXIT_CONFIG
    except (PolicyDenied, Forbidden) as e:
        err.write(f"gpuctl: denied: {e}\n")
        return EXIT_DENIED
    except (LockHeld, RunRefused) as e:
        err.write(f"gpuctl: refused: {e}\n")
        return EXIT_REFUSED
    except (ClusterError, NotReady) as e:
        err.write(f"gpuctl: error: {e}\n")
        return EXIT_CLUSTER
    except AuditTampered as e:
        err.write(f"gpuctl: error: {e}\n")
        return EXIT_TAMPERED
    except GpuctlError as e:
        err.write(f"gpuctl: error: {e}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("gpuctl: interrupted\n")
        return EXIT_INTERRUPTED


# Read-only commands whose process ends as soon as their output is out (see `run`).
_QUICK_EXIT = frozenset({"snapshot", "top"})


def run() -> None:
    """The `gpuctl` program: `main()`, then the process's exit.

    After `snapshot` and `top`, which hold a whole cluster's picture (hundreds of thousands
    of objects at 10,000 pods) and write nothing but their output, the interpreter's own
    teardown (freeing each object: ~0.5 s at that size) is skipped: output flushed and
    atexit handlers run, then `os._exit`. Other commands exit as usual."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in _QUICK_EXIT:
        import atexit
        import os

        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        atexit._run_exitfuncs()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
