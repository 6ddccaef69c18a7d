"""`gpuctl playbook ...` and `gpuctl executor`: the command line over the playbook engine.

    list | show NAME                       the definitions (files only, no cluster)
    plan NAME -p k=v ... [--json]          what a run would do, computed as you (dry runs)
    run NAME -p k=v ... [--yes] [--json]   plan, confirm, submit; execute now unless it needs an approval
    approve RUN [--comment] | deny RUN [--reason]
    execute RUN                            carry out an approved run (as its requester)
    undo RUN [--yes]                       submit the inverse of a finished run
    runs [--json]                          the PlaybookRuns in gpuctl's namespace

You are who your kubeconfig says (the API server's SelfSubjectReview, not a
guess from the file). `--as USER --as-group G` acts for someone else: the
policy must give you a role whose `act_as` covers them, and the cluster must
let you impersonate them. Exit codes: see gpuctl/cli.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import uuid
from typing import TYPE_CHECKING, Any, TextIO

from gpuctl.config import Settings
from gpuctl.errors import ConfigError, RunFailed, RunRefused
from gpuctl.identity import Identity, Requester

if TYPE_CHECKING:  # the engine (and the Kubernetes client under it) loads only for the verbs that use it
    from gpuctl.playbooks.engine import Engine, Submitted
    from gpuctl.playbooks.execution import Outcome
    from gpuctl.playbooks.plan import Plan
    from gpuctl.playbooks.registry import Registry

ENGINE_VERBS = ("plan", "run", "approve", "deny", "execute", "undo", "runs")


def _files_flags(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--config", metavar="FILE", help="config file (default ~/.config/gpuctl/config.yaml)")
    verb.add_argument("--playbooks-dir", metavar="DIR", help="site playbooks in addition to the built-in ones")
    verb.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def _cluster_flags(verb: argparse.ArgumentParser) -> None:
    _files_flags(verb)
    verb.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default $KUBECONFIG, ~/.kube/config)")
    verb.add_argument("--context", help="kubeconfig context")
    verb.add_argument("--in-cluster", action="store_true", default=None, help="use the pod's service account")
    verb.add_argument("--policy", metavar="FILE", help="gpuctl policy (roles, approvers); without one nobody may act")
    verb.add_argument("--audit", metavar="PATH|URL", help="the audit log: a SQLite file, or postgresql://user@host/db for a shared one (default ~/.local/state/gpuctl/audit.sqlite)")
    verb.add_argument("--gpuctl-namespace", metavar="NS", help="where PlaybookRuns, Leases and the kill switch live")


def _acting_flags(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--as", dest="as_user", metavar="USER", help="act for this user (the policy's act_as decides)")
    verb.add_argument("--as-group", action="append", default=[], metavar="GROUP", help="a group of --as (repeat)")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    playbook = commands.add_parser("playbook", help="remediation playbooks: list, show, plan, run, approve, runs ...")
    verbs = playbook.add_subparsers(dest="playbook_command", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="every playbook: name, description, approval, reversible")
    show = verbs.add_parser("show", help="one playbook's parameters, guardrails, permissions and actions")
    show.add_argument("name", metavar="NAME")
    for verb in (listing, show):
        _files_flags(verb)
        verb.add_argument("--json", action="store_true", help="the definitions as JSON (durations in seconds)")

    plan = verbs.add_parser("plan", help="what a run would do (dry run as you); changes nothing")
    run = verbs.add_parser("run", help="plan, confirm, submit, and execute unless it needs an approval")
    for verb in (plan, run):
        verb.add_argument("name", metavar="NAME")
        verb.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter (repeat)")
    run.add_argument("--yes", action="store_true", help="do not ask before submitting")
    run.add_argument("--key", metavar="KEY", help="idempotency key: a second run with the same key is never executed")
    approve = verbs.add_parser("approve", help="approve someone else's run")
    approve.add_argument("--comment", metavar="TEXT")
    deny = verbs.add_parser("deny", help="deny someone else's run (or withdraw your own)")
    deny.add_argument("--reason", metavar="TEXT")
    execute = verbs.add_parser("execute", help="carry out an approved run now, as its requester")
    undo = verbs.add_parser("undo", help="submit the inverse of a finished run (reversible playbooks)")
    undo.add_argument("--yes", action="store_true", help="do not ask before submitting")
    for verb in (approve, deny, execute, undo):
        verb.add_argument("run", metavar="RUN")
    runs = verbs.add_parser("runs", help="the PlaybookRuns: playbook, phase, requester, age")
    for verb in (plan, run, approve, deny, execute, undo, runs):
        _cluster_flags(verb)
        _acting_flags(verb)
        verb.add_argument("--json", action="store_true", help="the models as JSON (a plan, a run, an outcome)")

    executor = commands.add_parser("executor", help="execute approved runs as their requesters (leader-elected)")
    _cluster_flags(executor)
    add_replica_flags(executor)


def add_replica_flags(verb: argparse.ArgumentParser) -> None:
    """The flags of a leader-elected replica (`gpuctl executor`, `gpuctl serve`); settings fields in gpuctl/config.py."""
    group = verb.add_argument_group("replicas")
    group.add_argument("--name", dest="replica_name", metavar="NAME", help="this replica's name: the leader Lease's "
                       "holderIdentity (default $GPUCTL_REPLICA_NAME, else the host name: a pod's name)")  # fmt: skip
    group.add_argument("--leader-lease", metavar="DURATION", help="leader Lease duration, whole seconds (default 15)")
    group.add_argument("--leader-renew-deadline", metavar="DURATION", help="a leader that could not renew for this long "
                       "stops executing (default 10s)")  # fmt: skip
    group.add_argument("--leader-retry", metavar="DURATION", help="renewal and takeover attempts (default every 2s)")
    group.add_argument("--lock-lease", metavar="SECONDS", help="a run's per-target Lease duration (default 60): how "
                       "long before a dead replica's run is marked Interrupted")  # fmt: skip


def run_playbook_command(args: argparse.Namespace, settings: Settings, *, out: TextIO, registry: Registry | None = None) -> int:
    """Runs the `playbook` verb in `args`; errors are gpuctl errors (the CLI maps them to exit codes).

    `registry`: the playbooks' logic (default: gpuctl's own modules), for tests."""
    if args.playbook_command in ENGINE_VERBS:
        return asyncio.run(_engine_verb(args, settings, out, registry))
    from gpuctl.playbooks.loader import load_catalog
    from gpuctl.render.playbooks import list_rows, render_list, render_show

    catalog = load_catalog(settings.playbooks_dir)
    if args.playbook_command == "list":
        out.write(json.dumps(list_rows(catalog), indent=2) + "\n" if args.json else render_list(catalog))
        return 0
    playbook = catalog.get(args.name)
    if args.json:
        out.write(json.dumps({"source": catalog.sources[playbook.name], **playbook.model_dump(mode="json")}, indent=2) + "\n")
    else:
        out.write(render_show(playbook, catalog.sources[playbook.name]))
    return 0


def run_executor_command(args: argparse.Namespace, settings: Settings) -> int:
    """`gpuctl executor`: runs until SIGTERM or SIGINT (runs in progress finish; a second signal stops at once)."""
    from gpuctl.playbooks.executor import Executor
    from gpuctl.playbooks.leader import Election
    from gpuctl.playbooks.service import open_engine
    from gpuctl.serve.replica import replica_name
    from gpuctl.serve.signals import StopSignals

    name = replica_name(settings)  # a pod's name: stable across container restarts

    async def serve() -> None:
        async with open_engine(settings, host=name) as engine:
            executor = Executor(engine, name=name, election=Election.of(settings))
            with StopSignals(executor.stop):  # the first winds down, a second stops at once
                await executor.run()

    asyncio.run(serve())
    return 0


def requester(engine: Engine, args: argparse.Namespace) -> Requester:
    """You (the connection's identity), or whom `--as` names if the policy lets you act for them."""
    host = socket.gethostname()
    if args.as_user is None:
        if args.as_group:
            raise ConfigError("--as-group needs --as USER")
        return Requester(identity=engine.own, via="cli", detail=host)
    target = Identity(user=args.as_user, groups=tuple(args.as_group))
    engine.check_acting_for(engine.own, target)
    return Requester(identity=target, via="cli", detail=f"--as by {engine.own.user} on {host}")


async def _engine_verb(args: argparse.Namespace, settings: Settings, out: TextIO, registry: Registry | None) -> int:
    from gpuctl.playbooks.params import parse_assignments
    from gpuctl.playbooks.service import open_engine
    from gpuctl.render.plan import render_plan, render_runs

    if getattr(args, "json", False) and args.playbook_command in ("run", "undo") and not args.yes:
        raise ConfigError("--json prints no prompt: add --yes")
    async with open_engine(settings, registry=registry) as engine:
        who = requester(engine, args)
        verb = args.playbook_command
        if verb == "plan":
            plan = await engine.plan(who, args.name, parse_assignments(args.param), key=_key(None))
            _show(out, args, plan.model_dump(mode="json"), lambda: render_plan(plan))
            return 0
        if verb == "run":
            key = _key(args.key)
            plan = await engine.plan(who, args.name, parse_assignments(args.param), key=key)
            return await _submit(engine, args, out, who, plan, key=key)
        if verb == "undo":
            from gpuctl.playbooks.engine import undo_key

            plan = await engine.plan_undo(who, args.run)
            return await _submit(engine, args, out, who, plan, key=undo_key(args.run), undo_of=args.run)
        if verb in ("approve", "deny"):
            if verb == "approve":
                run = await engine.approve(who, args.run, comment=args.comment)
            else:
                run = await engine.deny(who, args.run, reason=args.reason)
            _show(out, args, run.model_dump(mode="json"), lambda: f"run {run.name}: {run.status.phase}\n")
            return 0
        if verb == "execute":
            return _finished(out, args, await engine.execute(args.run, by=who))
        runs = await engine.runs()
        _show(out, args, [r.model_dump(mode="json") for r in runs], lambda: render_runs(runs, engine.clock()))
        return 0


async def _submit(
    engine: Engine, args: argparse.Namespace, out: TextIO, who: Requester, plan: Plan, *, key: str, undo_of: str | None = None
) -> int:
    from gpuctl.render.plan import render_plan

    if not args.json:
        out.write(render_plan(plan))
    if plan.blocked:
        raise RunRefused(f"{plan.playbook} is blocked: {'; '.join(plan.blocked)}")
    if not plan.steps:
        return 0
    if not args.yes and not _confirm("submit this plan?", out):
        out.write("not submitted\n")
        return 0
    return await _carry_on(engine, args, out, who, await engine.submit(plan, key=key, undo_of=undo_of))


async def _carry_on(engine: Engine, args: argparse.Namespace, out: TextIO, who: Requester, submitted: Submitted) -> int:
    """After submitting: print where it stands, and execute it now when it needs no approval."""
    from gpuctl.render.plan import render_submitted

    if submitted.duplicate or submitted.needs_approval:
        _show(out, args, {"run": submitted.model_dump(mode="json")}, lambda: render_submitted(submitted))
        return 0
    if not args.json:
        out.write(render_submitted(submitted))
    outcome = await engine.execute_submitted(submitted, by=who)
    return _finished(out, args, outcome, submitted=submitted.model_dump(mode="json"))


def _finished(out: TextIO, args: argparse.Namespace, outcome: Outcome, **extra: Any) -> int:
    from gpuctl.render.plan import render_outcome

    _show(out, args, {**extra, "outcome": outcome.model_dump(mode="json")}, lambda: render_outcome(outcome))
    if not outcome.ok:
        raise RunFailed(f"run {outcome.run_id} {outcome.phase.lower()}: {outcome.message}",
                        hint=f"gpuctl audit show {outcome.run_id}")  # fmt: skip
    return 0


def _show(out: TextIO, args: argparse.Namespace, data: Any, text: Any) -> None:
    out.write(json.dumps(data, indent=2) + "\n" if args.json else text())


def _key(given: str | None) -> str:
    return given if given else f"cli:{uuid.uuid4()}"


def _confirm(question: str, out: TextIO) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("cannot ask for confirmation: stdin is not a terminal", hint="pass --yes")
    out.write(f"{question} [y/N] ")
    out.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")

