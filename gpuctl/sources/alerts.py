"""Firing and pending GPU alerts, read from Prometheus's /api/v1/alerts into the store.

Prometheus is asked, not Alertmanager: it knows pending alerts too and needs
no extra URL. An alert counts as a GPU alert when it names a GPU host
(`Hostname`/`hostname`) or a GPU (`gpu`), or is one of the rules gpuctl ships
(deploy/prometheus/gpuctl-rules.yaml), so the TUI and bot can put it on the
right GPU, node and pod. With a metrics selector (`--metrics-selector`), only
alerts whose labels match it count: the same scope as the metric queries.

Thousands of alerts fire when many GPUs idle (one per GPU), and the answer is
read every 30 s: `AlertReader` makes an Alert again only for an alert that
changed, and decodes nothing else of the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypedDict

import msgspec

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
    return _sorted(alert for raw in api_alerts if (alert := _accepted(raw, selector)) is not None)


def _sorted(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (a.state != "firing", a.name, a.node or "", a.gpu or "", a.pod or ""))


def _accepted(raw: Any, selector: Selector) -> Alert | None:
    """One entry of `data.alerts` as an Alert, when it is a GPU alert whose labels match `selector`."""
    if not isinstance(raw, Mapping):
        return None
    labels = raw.get("labels")
    if selector and not (isinstance(labels, Mapping) and selector.matches(labels)):
        return None
    return _to_alert(raw)


class _Annotations(TypedDict, total=False):
    summary: str


class _Entry(TypedDict, total=False):
    """What of an alert makes its Alert: its labels (kept undecoded: compared as they are), summary, state, start."""

    labels: msgspec.Raw
    annotations: _Annotations
    state: str
    activeAt: str


class _Data(TypedDict, total=False):
    alerts: list[msgspec.Raw]


class _Answer(TypedDict, total=False):
    data: _Data


_ANSWER = msgspec.json.Decoder(_Answer)
_ENTRY = msgspec.json.Decoder(_Entry)
_ENCODE = msgspec.json.Encoder()


class AlertReader:
    """/api/v1/alerts answers as sorted GPU alerts (see `gpu_alerts`), each alert made again only when what it is
    made of (labels, summary, state, start) differs from the answer before: the rest of an entry (its value, other
    annotations) moves with every evaluation and is not read. Not thread-safe: one reader per source, used on
    the source's parsing thread."""

    def __init__(self, selector: Selector = NO_SELECTOR) -> None:
        self._selector = selector
        # The answer before's entries by a digest of what their Alerts are made of (None: not a GPU alert of ours).
        self._known: dict[bytes, Alert | None] = {}

    def read(self, body: bytes) -> list[Alert]:
        """Raises ValueError (not JSON), KeyError (no `data`) or TypeError, as FETCH_ERRORS expects."""
        try:
            entries: Iterable[Any] = _ANSWER.decode(body)["data"].get("alerts", ())
        except msgspec.ValidationError:  # off that shape: decoded in full and judged entry by entry
            data = msgspec.json.decode(body)["data"]
            return gpu_alerts(data.get("alerts", []) if isinstance(data, Mapping) else [], self._selector)
        known, self._known = self._known, {}
        return _sorted(alert for alert in self._alerts(entries, known) if alert is not None)

    def _alerts(self, entries: Iterable[msgspec.Raw], known: Mapping[bytes, Alert | None]) -> Iterator[Alert | None]:
        for raw in entries:
            try:
                entry = _ENTRY.decode(raw)
            except msgspec.ValidationError:  # a summary that is no string, a label map that is no object...
                yield _accepted(msgspec.json.decode(raw), self._selector)
                continue
            # 16 bytes kept per alert, not its strings: the labels as Prometheus wrote them, then the rest as JSON.
            digest = hashlib.blake2b(entry.get("labels", b"null"), digest_size=16)
            digest.update(_ENCODE.encode((entry.get("annotations", {}).get("summary"), entry.get("state"), entry.get("activeAt"))))
            seen = digest.digest()
            alert = known[seen] if seen in known else _accepted(msgspec.json.decode(raw), self._selector)
            self._known[seen] = alert
            yield alert


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
        gpu = sys.intern(fields.parse_identity(labels).key)  # as the GPU rows' keys: one string, not two
    except ValueError:
        pass
    pod = fields.parse_pod(labels)
    severity = labels.get("severity") or None
    return Alert(  # the few names, severities and states: one string each, not one per alert
        name=sys.intern(name),
        severity=sys.intern(severity) if isinstance(severity, str) else severity,
        state=sys.intern(state),
        summary=" ".join(str(annotations.get("summary", "")).split()) or None,
        node=sys.intern(node) if isinstance(node, str) else None,
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
        self._reader = AlertReader(prometheus.selector)

    async def fetch(self) -> list[Alert]:
        return await self.prometheus.api_read("/api/v1/alerts", self._reader.read)  # read off the loop

    async def run(self, store: AlertSink) -> None:
        """Keep store.alerts current; on failure keep the last list (the metrics source reports the outage)."""
        while True:
            try:
                store.set_alerts(await self.fetch())
            except FETCH_ERRORS as e:
                log.warning("reading alerts from Prometheus failed: %s", describe_error(e))
            await asyncio.sleep(self.refresh_s)
