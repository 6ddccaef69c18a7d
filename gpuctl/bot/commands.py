"""`/gpu …` text → a typed command, or a `Problem` saying exactly what is wrong and how to write it.

The text is split into words and each word is checked against what its
position allows (Kubernetes names, a count, `key=value`, the `/` filter
language); nothing the user typed is ever interpolated into a query, a shell
or a template. `parse` never raises: any string at all gives a command or a
Problem (a hypothesis test holds it to that).

    status                        pools, GPUs busy/idle/free, alerts, data freshness
    idle [FILTER]                 idle GPU holders; FILTER: a namespace or `ns:team-a pool:a100`
    quota [NAMESPACE]             GPU quotas and usage per namespace
    pools                         node pools
    node NAME                     one node: GPUs, pods, taints
    pod NAMESPACE/NAME            one pod: state, GPUs, owners, budgets
    top [N] [FILTER]              the N busiest and idlest GPUs as a heatmap (default 10, at most 50)
    runs                          playbook runs
    run PLAYBOOK [key=value …]    plan a playbook run, posted for approval
    audit [RUN]                   the audit log (of one run)
    doctor [NAMESPACE]            the cluster checked against GPU practices: findings, why, fix
    help [COMMAND]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gpuctl.errors import ParameterError
from gpuctl.playbooks.params import parse_assignments
from gpuctl.playbooks.spec import DNS_LABEL, DNS_SUBDOMAIN
from gpuctl.query.filter import Filter

MAX_TEXT = 1000  # characters; Slack allows more, no command needs it
MAX_TOP = 50
DEFAULT_TOP = 10

USAGE: dict[str, tuple[str, str]] = {
    "status": ("status", "pools, GPUs busy/idle/free, firing alerts, data freshness"),
    "idle": ("idle [namespace | filter]", "pods holding idle GPUs, e.g. `idle team-a` or `idle ns:team-a pool:a100`"),
    "quota": ("quota [namespace]", "GPU quotas and what each namespace uses"),
    "pools": ("pools", "node pools: nodes, GPUs, models"),
    "node": ("node NAME", "one node: its GPUs, pods and taints"),
    "pod": ("pod NAMESPACE/NAME", "one pod: state, GPUs, owners, disruption budgets"),
    "top": ("top [N] [filter]", f"the N busiest and idlest GPUs (default {DEFAULT_TOP}, at most {MAX_TOP})"),
    "runs": ("runs", "playbook runs and where each stands"),
    "run": ("run PLAYBOOK [key=value …]", "plan a playbook run and post it for approval"),
    "audit": ("audit [RUN]", "the audit log, or one run's records"),
    "doctor": ("doctor [namespace]", "the cluster checked against GPU practices: findings, why and how to fix"),
    "help": ("help [command]", "this list, or one command"),
}

_NODE = re.compile(DNS_SUBDOMAIN, re.ASCII)
_NAMESPACE = re.compile(DNS_LABEL, re.ASCII)
_RUN = re.compile(DNS_SUBDOMAIN, re.ASCII)
_PLAYBOOK = re.compile(DNS_LABEL, re.ASCII)
_FILTER_WORD = re.compile(r"[\w.:/*-]+")  # names, `field:value`; no markup or punctuation soup


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Idle:
    filter: Filter = field(default_factory=Filter)


@dataclass(frozen=True)
class Quota:
    namespace: str | None = None


@dataclass(frozen=True)
class Pools:
    pass


@dataclass(frozen=True)
class NodeInfo:
    name: str


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str


@dataclass(frozen=True)
class Top:
    n: int = DEFAULT_TOP
    filter: Filter = field(default_factory=Filter)


@dataclass(frozen=True)
class Runs:
    pass


@dataclass(frozen=True)
class Run:
    playbook: str
    params: dict[str, str]


@dataclass(frozen=True)
class Audit:
    run: str | None = None


@dataclass(frozen=True)
class Doctor:
    namespace: str | None = None


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Problem:
    """Input that is not a command: `message` says what is wrong (user text in it is not escaped yet)."""

    message: str
    verb: str | None = None  # the command it was meant as, for its usage line


Command = Status | Idle | Quota | Pools | NodeInfo | PodInfo | Top | Runs | Run | Audit | Doctor | Help
_Parser = Callable[[list[str]], Command | Problem]
READ_ONLY = (Status, Idle, Quota, Pools, NodeInfo, PodInfo, Top)


def verb_of(command: Command | Problem) -> str:
    """The command's name as users type it (metrics label); 'invalid' for a Problem."""
    if isinstance(command, Problem):
        return "invalid"
    return _VERBS[type(command)]


def _unescape(text: str) -> str:
    # Slack sends &, < and > in command text as HTML entities.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _shown(word: str, limit: int = 40) -> str:
    return repr(word if len(word) <= limit else word[: limit - 1] + "…")


def parse(text: str) -> Command | Problem:
    """The command in the text after `/gpu` (empty: help)."""
    if len(text) > MAX_TEXT:
        return Problem(f"that is {len(text)} characters; no /gpu command needs more than {MAX_TEXT}")
    words = _unescape(text).split()
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    parser = _PARSERS.get(verb)
    if parser is None:
        return Problem(f"{_shown(words[0])} is not a /gpu command")
    return parser(args)


def _no_args(verb: str, command: Command) -> _Parser:
    def parse_it(args: list[str]) -> Command | Problem:
        if args:
            return Problem(f"{verb} takes no arguments (got {_shown(' '.join(args))})", verb)
        return command

    return parse_it


def _filter(verb: str, args: list[str]) -> Filter | Problem:
    for word in args:
        if not _FILTER_WORD.fullmatch(word):
            return Problem(f"{_shown(word)} is not a filter term: use names and field:value terms (ns:, pool:, node:, pod:, model:)", verb)
    return Filter.parse(" ".join(args))


def _idle(args: list[str]) -> Command | Problem:
    flt = _filter("idle", args)
    return flt if isinstance(flt, Problem) else Idle(flt)


def _namespace_arg(verb: str, args: list[str]) -> str | Problem | None:
    if len(args) > 1:
        return Problem(f"{verb} takes at most one namespace", verb)
    if args and not _NAMESPACE.fullmatch(args[0]):
        return Problem(f"{_shown(args[0])} is not a namespace name (lower-case letters, digits and '-')", verb)
    return args[0] if args else None


def _quota(args: list[str]) -> Command | Problem:
    namespace = _namespace_arg("quota", args)
    return namespace if isinstance(namespace, Problem) else Quota(namespace)


def _doctor(args: list[str]) -> Command | Problem:
    namespace = _namespace_arg("doctor", args)
    return namespace if isinstance(namespace, Problem) else Doctor(namespace)


def _node(args: list[str]) -> Command | Problem:
    if len(args) != 1:
        return Problem("node takes one node name", "node")
    if not _NODE.fullmatch(args[0]):
        return Problem(f"{_shown(args[0])} is not a node name (lower-case letters, digits, '-' and '.')", "node")
    return NodeInfo(args[0])


def _pod(args: list[str]) -> Command | Problem:
    if len(args) == 2:
        args = [f"{args[0]}/{args[1]}"]
    if len(args) != 1 or args[0].count("/") != 1:
        return Problem("pod takes NAMESPACE/NAME, e.g. `pod team-a/trainer-0`", "pod")
    namespace, name = args[0].split("/")
    if not _NAMESPACE.fullmatch(namespace):
        return Problem(f"{_shown(namespace)} is not a namespace name", "pod")
    if not _NODE.fullmatch(name):
        return Problem(f"{_shown(name)} is not a pod name", "pod")
    return PodInfo(namespace, name)


def _top(args: list[str]) -> Command | Problem:
    n = DEFAULT_TOP
    if args and args[0].isascii() and args[0].isdigit():
        n = int(args[0]) if len(args[0]) <= 4 else MAX_TOP + 1
        if not 1 <= n <= MAX_TOP:
            return Problem(f"top shows 1 to {MAX_TOP} GPUs (got {_shown(args[0])})", "top")
        args = args[1:]
    flt = _filter("top", args)
    return flt if isinstance(flt, Problem) else Top(n, flt)


def _run(args: list[str]) -> Command | Problem:
    if not args:
        return Problem("run needs a playbook name, e.g. `run reclaim-idle-gpus namespace=team-a`", "run")
    playbook = args[0]
    if not _PLAYBOOK.fullmatch(playbook) or len(playbook) > 63:
        return Problem(f"{_shown(playbook)} is not a playbook name", "run")
    try:
        params = parse_assignments(args[1:])
    except ParameterError as e:
        return Problem(f"{e.message}: write each parameter as key=value", "run")
    return Run(playbook, params)


def _audit(args: list[str]) -> Command | Problem:
    if len(args) > 1:
        return Problem("audit takes at most one run id", "audit")
    if args and (not _RUN.fullmatch(args[0]) or len(args[0]) > 253):
        return Problem(f"{_shown(args[0])} is not a run id", "audit")
    return Audit(args[0] if args else None)


def _help(args: list[str]) -> Command | Problem:
    if len(args) > 1:
        return Problem("help takes at most one command name", "help")
    if args and args[0].lower() not in USAGE:
        return Problem(f"{_shown(args[0])} is not a /gpu command", "help")
    return Help(args[0].lower() if args else None)


_PARSERS: dict[str, _Parser] = {
    "status": _no_args("status", Status()),
    "idle": _idle,
    "quota": _quota,
    "pools": _no_args("pools", Pools()),
    "node": _node,
    "pod": _pod,
    "top": _top,
    "runs": _no_args("runs", Runs()),
    "run": _run,
    "audit": _audit,
    "doctor": _doctor,
    "help": _help,
}
_VERBS: dict[type, str] = {
    Status: "status", Idle: "idle", Quota: "quota", Pools: "pools", NodeInfo: "node", PodInfo: "pod",
    Top: "top", Runs: "runs", Run: "run", Audit: "audit", Doctor: "doctor", Help: "help",
}  # fmt: skip
