"""Who is asking: the identity every playbook step is authorized and performed as.

One shape for the CLI (the kubeconfig user, or `--as`/`--as-group`), the TUI,
the Slack bot (a Slack user mapped to Kubernetes) and alert triggers. Writes
go to the API server as this identity through impersonation, so the cluster's
RBAC has the last word; the audit log records it with the front end it came
through.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Frontend = Literal["cli", "tui", "slack", "alert", "executor"]


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, description="Kubernetes user name, as RBAC subjects name it")
    groups: tuple[str, ...] = Field((), description="Kubernetes groups, every one sent as Impersonate-Group")

    def __str__(self) -> str:
        return self.user if not self.groups else f"{self.user} ({', '.join(self.groups)})"


class Requester(BaseModel):
    """An identity plus the front end its request came through (for policy and the audit log)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: Identity
    via: Frontend
    detail: str | None = Field(None, description="e.g. the Slack user id, the alert fingerprint, the host")
