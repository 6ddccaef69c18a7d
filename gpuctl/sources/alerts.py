"""Firing and pending GPU alerts, read from Prometheus's /api/v1/alerts into the store.

Prometheus is asked, not Alertmanager: it knows pending alerts too and needs
no extra URL. An alert counts as a GPU alert when it names a GPU host
(`Hostname`/`hostname`) or a GPU (`gpu`), or is one of the rules gpuctl ships
(deploy/prometheus/gpuctl-rules.yaml), so the TUI and bot can put it on the
right GPU, node and pod. With a metrics selector (`--metrics-selector`), only
alerts whose labels match it count: the same scope as the metric queries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from gpuctl.model import Alert
from gpuctl.sources import dcgm_fields as fields
from gpuctl.sources.prometheus import FETCH_ERRORS, PrometheusSource, describe_error
from gpuctl.sources.selector import NO_SELECTOR, Selector

log = logging.getLogger(__name__)

SHIPPED_ALERTS = frozenset(
    {"GpuIdleWhileAllocated", "GpuHot", "GpuMemoryNearlyFull", "GpuXidError", "GpuXidCritical", "DcgmExporterDown"}
)


class AlertSink(Protocol):
    def set_alerts(self, alerts: Sequence[Alert]) -> None: ...


def gpu_alerts(api_alerts: Iterable[Any], selector: Selector = NO_SELECTOR) -> list[Alert]:
    """The GPU-related alerts in an /api/v1/alerts `data.alerts` list whose labels match `selector`, sorted;
    junk entries are skipped."""
    out: list[Alert] = []
    for raw in api_alerts:
        if not isinstance(raw, Mapping):
            continue
        labels = raw.get("labels")
        if selector and not (isinstance(labels, Mapping) and selector.matches(labels)):
            continue
        alert = _to_alert(raw)
        if alert is not None:
            out.append(alert)
    out.sort(key=lambda a: (a.state != "firing", a.name, a.node or "", a.gpu or "", a.pod or ""))
    return out


def _to_alert(raw: Mapping[str, Any]) -> Alert | None:
    labels = raw.get("labels")
    if not isinstance(labels, Mapping):
        return None
    name = labels.get("alertname")
    node = labels.get("Hostname") or labels.get("hostname") or None
    if not isinstance(name, str) or not (name in SHIPPED_ALERTS or node or labels.get("gpu")):
        return None
    state = raw.get("state")
    if state not in ("firing", "pending"):  # "inactive": resolved, kept by Prometheus only for resending
        return None
    annotations = raw.get("annotations")
    if not isinstance(annotations, Mapping):
        annotations = {}
    gpu: str | None = None
    try:
        gpu = fields.parse_identity(labels).key
    except ValueError:
        pass
    pod = fields.parse_pod(labels)
    return Alert(
        name=name,
        severity=labels.get("severity") or None,
        state=state,
        summary=" ".join(str(annotations.get("summary", "")).split()) or None,
        node=node if isinstance(node, str) else None,
        gpu=gpu,
        namespace=pod[0].namespace if pod else None,
        pod=pod[0].name if pod else None,
        since=_parse_time(raw.get("activeAt")),
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # Prometheus writes RFC 3339 with nanoseconds; Python takes at most microseconds.
        head, _, frac = value.rstrip("Z").partition(".")
        digits = "".join(c for c in frac if c.isdigit())[:6]
        return datetime.fromisoformat(f"{head}.{digits or '0'}+00:00")
    except ValueError:
        return None


class PrometheusAlertsSource:
    """Polls Prometheus's alerts through a PrometheusSource (same URL, auth, timeouts)."""

    name = "prometheus-alerts"

    def __init__(self, prometheus: PrometheusSource, *, refresh_s: float = 30.0) -> None:
        self.prometheus = prometheus
        self.refresh_s = refresh_s

    async def fetch(self) -> list[Alert]:
        selector = self.prometheus.selector

        def alerts(data: Any) -> list[Alert]:  # off the loop: thousands of alerts when many GPUs idle
            return gpu_alerts(data.get("alerts", []) if isinstance(data, Mapping) else [], selector)

        return await self.prometheus.api_get("/api/v1/alerts", then=alerts)

    async def run(self, store: AlertSink) -> None:
        """Keep store.alerts current; on failure keep the last list (the metrics source reports the outage)."""
        while True:
            try:
                store.set_alerts(await self.fetch())
            except FETCH_ERRORS as e:
                log.warning("reading alerts from Prometheus failed: %s", describe_error(e))
            await asyncio.sleep(self.refresh_s)
