"""gpuctl's error tree: one root, a few branches, each with a message a person can act on.

    GpuctlError                 anything gpuctl can explain (message + optional hint)
     ├── ConfigError            bad flags, environment or config file        (CLI exit 2)
     │    ├── PlaybookError         a playbook file is invalid (file:line: field), names clash, unknown name
     │    ├── ParameterError        a playbook parameter is unknown, missing or invalid (-p k=v, Slack, alert)
     │    ├── PolicyError           the gpuctl policy file is invalid (file:line: field)
     │    └── BotConfigError        the bot's identity map or alert rules file is invalid (file:line: field)
     ├── ClusterError           talking to the Kubernetes API failed
     │    ├── ClusterUnreachable    no connection, TLS failure, timeout      (CLI exit 3)
     │    └── Unauthorized          credentials rejected (401) or RBAC (403) (CLI exit 3)
     ├── MetricsUnavailable     Prometheus / NVML gave no metrics
     ├── NotReady               the first data did not arrive in time
     ├── SourceStopped          a source stopped on an unexpected error: data incomplete (CLI exit 1)
     ├── PolicyDenied           gpuctl's policy does not let this identity run or approve that playbook there (CLI exit 4)
     ├── AuditError             the audit log cannot be opened, read or written              (CLI exit 1)
     │    ├── AuditUnavailable      its database cannot be reached: refused, timed out, login rejected (CLI exit 1)
     │    └── AuditTampered         a record was edited, removed, reordered or forged (CLI exit 5)
     ├── LockHeld               another playbook run holds the target's Lease    (CLI exit 6)
     ├── MigConfigInvalid       a mig-parted config that cannot be parsed or applied
     ├── RunRefused             a run may not go on now; nothing was changed     (CLI exit 6)
     │    ├── PlanStale             what the plan acts on changed since it was computed: plan again
     │    └── PlaybooksDisabled     the kill switch is engaged
     └── RunFailed              a run executed but failed or did not verify; its record says what was done

Answers to gpuctl.playbooks' writes and reviews (each carries the API's status and reason, and
`.call`, the request's ApiCall, so a refused write is recorded too):

    ClusterError
     ├── Unauthorized
     │    └── Forbidden         the cluster's RBAC refused the acting identity (403)  (CLI exit 4)
     ├── ApiStatusError         another error answer (.status, .reason)
     │    ├── NotFound          the object is not there (404)
     │    ├── Conflict          it changed since it was read: resourceVersion/uid precondition (409)
     │    │    └── AlreadyExists    the name is taken: e.g. a PlaybookRun's idempotency key (409)
     │    └── ApiRejected       any other: invalid (422), bad request (400), server error (5xx)
     └── NotInstalled           a CustomResourceDefinition gpuctl needs is not installed

The TUI shows `str(error)` in a toast, the bot posts it to Slack, the CLI prints
it on one line: so messages say what failed *and* what to do, without a traceback.
Third-party exceptions are mapped at the boundary that caught them and chained
with `raise ... from exc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuctl.playbooks.kubeapi import ApiCall


class GpuctlError(Exception):
    """Root of every error gpuctl raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(GpuctlError):
    """A flag, GPUCTL_* variable or config-file value is missing or invalid."""


class ClusterError(GpuctlError):
    """The Kubernetes API could not be used.

    `call`: the request the API server answered with this error, when gpuctl.playbooks made it
    (kubeapi.refusal sets it), so a playbook records a refused write like any other; else None."""

    def __init__(self, message: str, *, hint: str | None = None, call: ApiCall | None = None) -> None:
        super().__init__(message, hint=hint)
        self.call = call


class ClusterUnreachable(ClusterError):
    """No answer from the API server: refused, DNS, TLS, timeout."""


class Unauthorized(ClusterError):
    """The API server answered 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, message: str, *, status: int, hint: str | None = None, call: ApiCall | None = None) -> None:
        super().__init__(message, hint=hint, call=call)
        self.status = status


class MetricsUnavailable(GpuctlError):
    """No GPU metrics: Prometheus down or without DCGM series, or no NVML driver."""


class NotReady(GpuctlError):
    """The first list or the first metrics did not arrive before the deadline."""


class SourceStopped(GpuctlError):
    """A source stopped on an unexpected error (a bug or an answer gpuctl cannot read, not an
    outage): what it fed is frozen, so an answer built on it would be incomplete."""

    def __init__(self, source: str, error: str) -> None:
        super().__init__(f"the {source} source stopped: {error}", hint="a gpuctl bug: please report it with the -v log")
        self.source = source
        self.error = error


@dataclass(frozen=True)
class FileProblem:
    """One thing wrong in a YAML file, where a person can find it: `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field + ': ' if self.field else ''}{self.message}"


class _FileProblems(ConfigError):
    """Carries every problem found, so a caller (or test) can read each file, line and field."""

    def __init__(self, message: str, *, hint: str | None = None, problems: Sequence[FileProblem] = ()) -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)


class PlaybookError(_FileProblems):
    """A playbook definition is invalid (each problem names file, line and field), two share a name, or none has it."""


class ParameterError(ConfigError):
    """A playbook parameter value was rejected; the message says which and what is allowed."""


class PolicyError(_FileProblems):
    """The gpuctl policy file is missing or invalid (each problem names file, line and field)."""


class BotConfigError(_FileProblems):
    """The Slack bot's identity map or alert rules file is missing or invalid (each problem names file, line and field)."""


class PolicyDenied(GpuctlError):
    """gpuctl's policy does not allow it; the message names the user, the playbook, the scope and the role that fell short."""


class AuditError(GpuctlError):
    """The audit log cannot be opened, read or written (path, permissions, not a gpuctl log)."""


class AuditUnavailable(AuditError):
    """The audit log's database server (PostgreSQL) cannot be reached or refused the login: nothing was
    read or written. The message names the server by its URL without the password."""


class AuditTampered(AuditError):
    """The audit log's hash chain is broken: a record was edited, removed, reordered or forged."""


class LockHeld(GpuctlError):
    """Another playbook run holds the Lease on this target (node, pool, namespace)."""

    def __init__(self, message: str, *, holder: str, since: datetime | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder
        self.since = since


class RunRefused(GpuctlError):
    """A run may not start or go on now (wrong phase, blocked plan, expired approval...); nothing was changed."""


class NotLeading(RunRefused):
    """This replica does not (or no longer) hold the leader Lease: it may not write for a run."""


class PlanStale(RunRefused):
    """A target of the plan changed (or went away) since the plan was computed; the message lists what."""


class PlaybooksDisabled(RunRefused):
    """The kill switch is engaged: no playbook run starts, and running ones stop before their next write."""


class RunFailed(GpuctlError):
    """A run executed but a step failed or verification did not pass; the audit log and the run say what was done."""


class Forbidden(Unauthorized):
    """403 on a request made as an acting identity: the cluster's RBAC (or admission) said no."""

    def __init__(self, message: str, *, reason: str | None = None, hint: str | None = None, call: ApiCall | None = None) -> None:
        super().__init__(message, status=403, hint=hint, call=call)
        self.reason = reason


class ApiStatusError(ClusterError):
    """An error answer from the API server: its HTTP status, Status `reason` (NotFound, Conflict, Invalid...)
    and, from a playbook's request, the `call` (see ClusterError)."""

    def __init__(
        self, message: str, *, status: int, reason: str | None = None, hint: str | None = None, call: ApiCall | None = None
    ) -> None:
        super().__init__(message, hint=hint, call=call)
        self.status = status
        self.reason = reason


class NotFound(ApiStatusError):
    """404: the object (or the pod to evict) does not exist."""


class Conflict(ApiStatusError):
    """409: the object changed since it was read (a resourceVersion or uid precondition failed)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists: an object of that name exists (a duplicate idempotency key)."""


class ApiRejected(ApiStatusError):
    """Any other error answer: invalid object (422), bad request (400), a server error (5xx)."""


class NotInstalled(ClusterError):
    """The API server does not serve a custom resource gpuctl needs (its CRD is not installed)."""


class MigConfigInvalid(GpuctlError):
    """A mig-parted config file that does not parse, lacks the named config, or
    asks for MIG devices the node's GPUs cannot hold."""


__all__ = [
    "AlreadyExists",
    "ApiRejected",
    "ApiStatusError",
    "AuditError",
    "AuditTampered",
    "AuditUnavailable",
    "BotConfigError",
    "ClusterError",
    "ClusterUnreachable",
    "ConfigError",
    "Conflict",
    "FileProblem",
    "Forbidden",
    "GpuctlError",
    "LockHeld",
    "MetricsUnavailable",
    "MigConfigInvalid",
    "NotFound",
    "NotInstalled",
    "NotReady",
    "ParameterError",
    "PlanStale",
    "PlaybookError",
    "PlaybooksDisabled",
    "PolicyDenied",
    "PolicyError",
    "RunFailed",
    "RunRefused",
    "SourceStopped",
    "Unauthorized",
]
