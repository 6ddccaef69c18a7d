"""gpuctl's error tree: one root, a few branches, each with a message a person can act on.

    GpuctlError                 anything gpuctl can explain (message + optional hint)
     ├── ConfigError            bad flags, environment or config file        (CLI exit 2)
     │    ├── PlaybookError         a playbook file is invalid (file:line: field), names clash, unknown name
     │    ├── ParameterError        a playbook parameter is unknown, missing or invalid (-p k=v, Slack, alert)
     │    └── PolicyError           the gpuctl policy file is invalid (file:line: field)
     ├── ClusterError           talking to the Kubernetes API failed
     │    ├── ClusterUnreachable    no connection, TLS failure, timeout      (CLI exit 3)
     │    └── Unauthorized          credentials rejected (401) or RBAC (403) (CLI exit 3)
     ├── MetricsUnavailable     Prometheus / NVML gave no metrics
     ├── NotReady               the first data did not arrive in time
     ├── PolicyDenied           gpuctl's policy does not let this identity run or approve that playbook there
     ├── AuditError             the audit log cannot be opened, read or written
     │    └── AuditTampered         a record was edited, removed, reordered or forged (CLI exit 5)
     └── MigConfigInvalid       a mig-parted config that cannot be parsed or applied

The TUI shows `str(error)` in a toast, the bot posts it to Slack, the CLI prints
it on one line: so messages say what failed *and* what to do, without a traceback.
Third-party exceptions are mapped at the boundary that caught them and chained
with `raise ... from exc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
    """The Kubernetes API could not be used."""


class ClusterUnreachable(ClusterError):
    """No answer from the API server: refused, DNS, TLS, timeout."""


class Unauthorized(ClusterError):
    """The API server answered 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class MetricsUnavailable(GpuctlError):
    """No GPU metrics: Prometheus down or without DCGM series, or no NVML driver."""


class NotReady(GpuctlError):
    """The first list or the first metrics did not arrive before the deadline."""


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


class PolicyDenied(GpuctlError):
    """gpuctl's policy does not allow it; the message names the user, the playbook, the scope and the role that fell short."""


class AuditError(GpuctlError):
    """The audit log cannot be opened, read or written (path, permissions, not a gpuctl log)."""


class AuditTampered(AuditError):
    """The audit log's hash chain is broken: a record was edited, removed, reordered or forged."""


class MigConfigInvalid(GpuctlError):
    """A mig-parted config file that does not parse, lacks the named config, or
    asks for MIG devices the node's GPUs cannot hold."""


__all__ = [
    "AuditError",
    "AuditTampered",
    "ClusterError",
    "ClusterUnreachable",
    "ConfigError",
    "FileProblem",
    "GpuctlError",
    "MetricsUnavailable",
    "MigConfigInvalid",
    "NotReady",
    "ParameterError",
    "PlaybookError",
    "PolicyDenied",
    "PolicyError",
    "Unauthorized",
]
