"""The bot's metrics in Prometheus's text format, and the delivery log that keeps retries from acting twice."""

from __future__ import annotations

from gpuctl.bot.app import Deliveries, delivery_key
from gpuctl.bot.metrics import BotMetrics


def test_text_format() -> None:
    m = BotMetrics()
    m.requests.inc(command="status", outcome="ok")
    m.requests.inc(command="status", outcome="ok")
    m.requests.inc(command='we"ird\\', outcome="error")
    for seconds in (0.004, 0.02, 0.02, 7.0):
        m.ack_seconds.observe(seconds, kind="command")
    text = m.render()
    assert 'gpuctl_bot_requests_total{command="status",outcome="ok"} 2' in text
    assert 'gpuctl_bot_requests_total{command="we\\"ird\\\\",outcome="error"} 1' in text
    assert 'gpuctl_bot_ack_seconds_bucket{kind="command",le="0.005"} 1' in text
    assert 'gpuctl_bot_ack_seconds_bucket{kind="command",le="0.025"} 3' in text
    assert 'gpuctl_bot_ack_seconds_bucket{kind="command",le="5"} 3' in text
    assert 'gpuctl_bot_ack_seconds_bucket{kind="command",le="+Inf"} 4' in text
    assert 'gpuctl_bot_ack_seconds_count{kind="command"} 4' in text
    assert 'gpuctl_bot_ack_seconds_sum{kind="command"} 7.044' in text
    assert "gpuctl_bot_duplicates_total 0" in text
    assert text.endswith("\n") and "# TYPE gpuctl_bot_alerts_total counter" in text


def test_deliveries_are_acted_on_once_within_the_ttl() -> None:
    now = [0.0]
    seen = Deliveries(ttl_s=60, now=lambda: now[0])
    assert seen.first("trigger_id:1") and not seen.first("trigger_id:1") and seen.first("trigger_id:2")
    now[0] = 61.0
    assert seen.first("trigger_id:1")  # long expired: Slack never reuses one, the log just forgets it
    assert len(seen.seen) == 1


def test_delivery_keys() -> None:
    assert delivery_key({"trigger_id": "13345.aa", "event_id": "Ev1"}) == "trigger_id:13345.aa"
    assert delivery_key({"event_id": "Ev1"}) == "event_id:Ev1"
    assert delivery_key({"type": "url_verification"}) is None
