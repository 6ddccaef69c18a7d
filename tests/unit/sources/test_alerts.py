"""AlertReader: /api/v1/alerts answers as gpu_alerts reads them, each alert made again only when it changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpuctl.sources.alerts import AlertReader, gpu_alerts
from gpuctl.sources.selector import parse_selector


def idle_alert(gpu: int, *, value: str = "1e+00", state: str = "firing", cluster: str = "a") -> dict[str, Any]:
    """An entry as Prometheus's /api/v1/alerts gives one for gpuctl's GpuIdleWhileAllocated rule on a
    dcgm-exporter series (its labels as scraped: the exporter's pod labels renamed to exported_*)."""
    return {
        "labels": {
            "DCGM_FI_DRIVER_VERSION": "550.90.07", "GPU_I_ID": "", "Hostname": "node-1",
            "UUID": f"GPU-0000000{gpu}", "alertname": "GpuIdleWhileAllocated", "cluster": cluster,
            "container": "dcgm-exporter", "device": f"nvidia{gpu}", "exported_container": "worker",
            "exported_namespace": "ml", "exported_pod": f"trainer-{gpu}", "gpu": str(gpu),
            "instance": "10.0.0.7:9400", "job": "dcgm-exporter", "modelName": "NVIDIA H100 80GB HBM3",
            "namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x2x7k", "severity": "warning",
        },
        "annotations": {
            "description": f"Current utilisation {value}%.",
            "summary": f"GPU {gpu} on node-1 is allocated to ml/trainer-{gpu} but has been under 5% busy for 30 minutes",
        },
        "state": state,
        "activeAt": "2026-12-02T11:17:29.036627016Z",
        "value": value,
    }


def answer(*entries: Any) -> bytes:
    return json.dumps({"status": "success", "data": {"alerts": list(entries)}}).encode()


JUNK = [
    {"labels": {"alertname": "NodeDiskFull", "instance": "n1"}, "state": "firing"},
    {"labels": {"alertname": "GpuHot", "Hostname": "node-2", "gpu": "0"}, "annotations": {"summary": 5}, "state": "firing"},
    {"labels": "nonsense"},
    "junk",
    {"labels": {"alertname": "DcgmExporterDown", "instance": "n1:9400"}, "state": "inactive"},
]


def test_an_answer_reads_as_gpu_alerts_reads_it() -> None:
    entries = [idle_alert(1), *JUNK, idle_alert(0, state="pending")]
    alerts = AlertReader().read(answer(*entries))
    assert alerts == gpu_alerts(entries)
    assert [(a.name, a.state, a.gpu, a.namespace, a.pod) for a in alerts] == [
        ("GpuHot", "firing", "node-2/0", None, None),  # a summary that is no string: judged in full, and kept
        ("GpuIdleWhileAllocated", "firing", "node-1/1", "ml", "trainer-1"),
        ("GpuIdleWhileAllocated", "pending", "node-1/0", "ml", "trainer-0"),
    ]


def test_an_unchanged_alert_is_the_same_object_and_a_changed_one_is_made_again() -> None:
    reader = AlertReader()
    first = {a.gpu: a for a in reader.read(answer(idle_alert(0), idle_alert(1, state="pending"), idle_alert(2)))}
    # The next evaluation: every value (and the annotation made from it) moved; GPU 1's alert began firing; GPU 2's ended.
    second = {a.gpu: a for a in reader.read(answer(idle_alert(0, value="2e+00"), idle_alert(1, value="3e+00")))}
    assert second["node-1/0"] is first["node-1/0"]
    assert second["node-1/1"] is not first["node-1/1"] and second["node-1/1"].state == "firing"
    assert set(second) == {"node-1/0", "node-1/1"}
    # Only the last answer's alerts are remembered: GPU 2's, back, is made again.
    third = {a.gpu: a for a in reader.read(answer(idle_alert(2)))}
    assert third["node-1/2"] is not first["node-1/2"] and third["node-1/2"] == first["node-1/2"]


def test_the_selector_scopes_alerts_read_again_too() -> None:
    reader = AlertReader(parse_selector('cluster="a"'))
    body = answer(idle_alert(0, cluster="a"), idle_alert(1, cluster="b"))
    assert [a.gpu for a in reader.read(body)] == ["node-1/0"]
    assert [a.gpu for a in reader.read(body)] == ["node-1/0"]


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"<html>", ValueError), (b'{"status": "success"}', KeyError), (b'{"data": {"alerts": 5}}', TypeError)],
)
def test_an_answer_that_is_no_alert_list_raises_what_a_failed_fetch_raises(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        AlertReader().read(body)


def test_fields_it_does_not_know_are_ignored_and_alerts_that_are_no_list_are_judged_in_full() -> None:
    entries = [idle_alert(0), *JUNK]
    body = json.dumps({"data": {"alerts": entries, "groups": [1]}, "warnings": ["x"], "infos": 3}).encode()
    assert AlertReader().read(body) == gpu_alerts(entries)
    odd = json.dumps({"data": {"alerts": {"Hostname": "node-1"}}}).encode()
    assert AlertReader().read(odd) == gpu_alerts({"Hostname": "node-1"}) == []
