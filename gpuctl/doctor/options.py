"""The doctor's tunables (thresholds and filters), validated at the boundary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DoctorOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mig_pending_after_s: float = Field(
        900.0, ge=0, description="a MIG reconfiguration pending longer than this is reported (the MIG manager's own"
        " operand wait is 5 min per step)"
    )
    checks: tuple[str, ...] = Field((), description="only these check ids or families (prefix before the dot)")
    namespace: str | None = Field(None, description="only findings about objects in this namespace")

    def selects(self, check_id: str) -> bool:
        return not self.checks or any(check_id == c or check_id.startswith(c.rstrip(".") + ".") for c in self.checks)
