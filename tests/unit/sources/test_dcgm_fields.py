"""Parsing dcgm-exporter series as Prometheus returns them, in both metric generations."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuctl.model import PodRef
from gpuctl.sources import dcgm_fields as f
from gpuctl.sources.dcgm_fields import Quantity, Reading, Rejection

BASE = {"gpu": "1", "UUID": "GPU-bbbb-0002", "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "node-a"}


def series(name: str, value: str, **labels: str) -> dict:
    return {"metric": {"__name__": name, **BASE, **labels}, "value": [1700000000.123, value]}


def test_every_quantity_has_a_classic_and_a_49_name() -> None:
    for q in Quantity:
        generations = {m.generation for m in f.METRICS if m.quantity is q}
        assert generations == {"classic", "4.9"}, q


@pytest.mark.parametrize(
    ("name", "raw", "quantity", "expected"),
    [
        ("DCGM_FI_DEV_GPU_UTIL", "37", Quantity.UTIL, 37.0),
        ("DCGM_FI_DEV_GPU_UTIL_RATIO", "0.37", Quantity.UTIL, 37.0),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.5", Quantity.UTIL, 50.0),
        ("DCGM_FI_DEV_FB_USED", "4120", Quantity.FB_USED, 4120.0),
        ("DCGM_FI_DEV_FB_USED_BYTES", str(4120 * 1024 * 1024), Quantity.FB_USED, 4120.0),
        ("DCGM_FI_DEV_FB_FREE_BYTES", str(1024 * 1024), Quantity.FB_FREE, 1.0),
        ("DCGM_FI_DEV_FB_CAPACITY_BYTES", str(81920 * 1024 * 1024), Quantity.FB_TOTAL, 81920.0),
        ("DCGM_FI_DEV_GPU_TEMP_CELSIUS", "61", Quantity.TEMP, 61.0),
        ("DCGM_FI_DEV_POWER_USAGE", "312.25", Quantity.POWER, 312.25),
        ("DCGM_FI_DEV_BOARD_POWER_WATTS", "312.25", Quantity.POWER, 312.25),
        ("DCGM_FI_DEV_XID_ERROR", "79", Quantity.XID, 79.0),
    ],
)
def test_values_convert_to_gpuctl_units(name: str, raw: str, quantity: Quantity, expected: float) -> None:
    r = f.parse_series(series(name, raw))
    assert isinstance(r, Reading)
    assert r.metric.quantity is quantity
    assert math.isclose(r.value, expected)


def test_identity_labels_both_spellings() -> None:
    r = f.parse_series({"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": "3", "uuid": "GPU-x", "model_name": "H100", "hostname": "n9"}, "value": [0, "1"]})
    assert isinstance(r, Reading)
    assert (r.gpu.hostname, r.gpu.index, r.gpu.uuid, r.gpu.model) == ("n9", 3, "GPU-x", "H100")
    assert r.gpu.key == "n9/3"


def test_mig_instance_labels() -> None:
    r = f.parse_series(series("DCGM_FI_DEV_FB_USED", "10", GPU_I_PROFILE="1g.10gb", GPU_I_ID="9"))
    assert isinstance(r, Reading)
    assert (r.gpu.mig_profile, r.gpu.mig_instance, r.gpu.key) == ("1g.10gb", 9, "node-a/1/mig9")


@pytest.mark.parametrize(
    ("labels", "spelling"),
    [
        ({"pod": "trainer-0", "namespace": "ml", "container": "trainer"}, "plain"),
        ({"exported_pod": "trainer-0", "exported_namespace": "ml", "exported_container": "trainer"}, "exported"),
        ({"pod_name": "trainer-0", "pod_namespace": "ml", "container_name": "trainer"}, "legacy"),
    ],
)
def test_pod_label_spellings(labels: dict[str, str], spelling: str) -> None:
    r = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", **labels))
    assert isinstance(r, Reading)
    assert r.pod == PodRef(namespace="ml", name="trainer-0", container="trainer")
    assert r.pod_spelling == spelling


def test_exported_pod_beats_the_scrape_targets_own_pod_label() -> None:
    r = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", pod="dcgm-exporter-x", namespace="gpu-operator", exported_pod="job-1", exported_namespace="ml"))
    assert isinstance(r, Reading)
    assert r.pod == PodRef(namespace="ml", name="job-1")


def test_pod_refs_are_shared_across_refreshes_and_forget_pods_no_longer_named() -> None:
    pods = f.PodRefs()
    first = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", pod="a", namespace="ml"), pods)
    other = f.parse_series(series("DCGM_FI_DEV_FB_USED", "1", pod="a", namespace="ml"), pods)
    gone = f.parse_series(series("DCGM_FI_DEV_FB_USED", "1", pod="b", namespace="ml"), pods)
    assert isinstance(first, Reading) and isinstance(other, Reading) and isinstance(gone, Reading)
    assert first.pod is other.pod and first.pod == PodRef(namespace="ml", name="a", container=None)
    assert first.pod.model_fields_set == PodRef(namespace="ml", name="a", container=None).model_fields_set
    pods.next_refresh()
    again = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "5", pod="a", namespace="ml"), pods)
    assert isinstance(again, Reading) and again.pod is first.pod  # the next refresh holds the same object
    pods.next_refresh()  # "b" was not named in the refresh before: forgotten
    back = f.parse_series(series("DCGM_FI_DEV_FB_USED", "1", pod="b", namespace="ml"), pods)
    assert isinstance(back, Reading) and back.pod == gone.pod and back.pod is not gone.pod


def test_series_of_one_refresh_share_their_gpus_and_pods_through_its_memo() -> None:
    memo = f.RefreshMemo()
    util, used, other = (
        f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "1", pod="a", namespace="ml"), memo=memo),
        f.parse_series(series("DCGM_FI_DEV_FB_USED", "2", pod="a", namespace="ml"), memo=memo),
        f.parse_series(series("DCGM_FI_DEV_FB_USED", "2", gpu="2"), memo=memo),
    )
    assert isinstance(util, Reading) and isinstance(used, Reading) and isinstance(other, Reading)
    assert util.gpu is used.gpu and other.gpu is not util.gpu and len({id(g) for g in memo.identities.values()}) == 2
    assert util.pod is used.pod and util.pod is not None and other.pod is None and len(memo.pods) == 2  # parsed once each


def test_empty_pod_label_means_not_held() -> None:
    r = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", pod="", namespace="", container=""))
    assert isinstance(r, Reading) and r.pod is None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s["metric"].pop("Hostname"), "no Hostname label"),
        (lambda s: s["metric"].update(gpu="nvidia0"), "gpu label is not a number"),
        (lambda s: s["metric"].update(gpu="-1"), "gpu label is not a number"),
        (lambda s: s["metric"].pop("gpu"), "no gpu label"),
        (lambda s: s["metric"].update(GPU_I_ID="x"), "GPU_I_ID label is not a number"),
        (lambda s: s.update(value=[0, "NaN"]), "value is NaN or infinite"),
        (lambda s: s.update(value=[0, "+Inf"]), "value is NaN or infinite"),
        (lambda s: s.update(value=[0, "abc"]), "value is not a number"),
        (lambda s: s.update(value=[0, "-3"]), "value is negative"),
        (lambda s: s.pop("value"), "value is not a number"),
        (lambda s: s["metric"].update(__name__="node_cpu_seconds_total"), "unknown metric name"),
        (lambda s: s.pop("metric"), "no labels"),
    ],
)
def test_malformed_series_are_rejected_with_a_reason(mutate, reason: str) -> None:
    s = series("DCGM_FI_DEV_GPU_UTIL", "12")
    mutate(s)
    assert f.parse_series(s) == Rejection(reason)


def test_parse_results_counts_rejections() -> None:
    good = series("DCGM_FI_DEV_GPU_UTIL", "12")
    bad = series("DCGM_FI_DEV_GPU_UTIL", "NaN", gpu="2")
    parsed = f.parse_results([good, bad, "not a series", {"metric": None}])
    assert len(parsed.readings) == 1
    assert parsed.rejected == 3
    assert parsed.reasons["value is NaN or infinite"] == 1


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_parse_results_never_raises(junk) -> None:
    parsed = f.parse_results([junk, {"metric": junk, "value": junk}])
    assert parsed.rejected + len(parsed.readings) == 2


def test_merge_joins_quantities_per_gpu_and_prefers_classic_names() -> None:
    results = [
        series("DCGM_FI_DEV_GPU_UTIL", "40"),
        series("DCGM_FI_DEV_GPU_UTIL_RATIO", "0.9"),  # same GPU from a second, upgraded exporter
        series("DCGM_FI_DEV_FB_USED", "1000"),
        series("DCGM_FI_DEV_FB_FREE", "3000"),
        series("DCGM_FI_DEV_GPU_TEMP", "70"),
        series("DCGM_FI_DEV_POWER_USAGE", "250.5"),
        series("DCGM_FI_DEV_XID_ERRORS", "0"),
        series("DCGM_FI_DEV_GPU_UTIL", "5", gpu="0", pod="p", namespace="ml"),
    ]
    samples = {s.key: s for s in f.merge_readings(f.parse_results(results).readings)}
    one = samples["node-a/1"]
    assert (one.util_pct, one.mem_used_mib, one.mem_free_mib, one.temp_c, one.power_w, one.xid) == (40.0, 1000.0, 3000.0, 70.0, 250.5, 0)
    assert one.uuid == "GPU-bbbb-0002" and one.model == "NVIDIA A100-SXM4-80GB" and one.pod is None
    assert samples["node-a/0"].pod == PodRef(namespace="ml", name="p")
    assert (one.util_metric, samples["node-a/0"].util_metric) == ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL")
    assert samples["node-a/0"].temp_c is None and samples["node-a/0"].xid is None


def test_merge_prefers_engine_activity_for_a_mig_instance_and_names_the_metric_it_took() -> None:
    mig = {"GPU_I_PROFILE": "1g.10gb", "GPU_I_ID": "3"}
    results = [
        series("DCGM_FI_DEV_GPU_UTIL", "0", **mig),
        series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.6", **mig),
        series("DCGM_FI_DEV_GPU_UTIL", "30"),
        series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.7"),
    ]
    samples = {s.key: s for s in f.merge_readings(f.parse_results(results).readings)}
    assert (samples["node-a/1/mig3"].util_pct, samples["node-a/1/mig3"].util_metric) == (60.0, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
    assert (samples["node-a/1"].util_pct, samples["node-a/1"].util_metric) == (30.0, "DCGM_FI_DEV_GPU_UTIL")


def test_merge_derives_free_memory_from_capacity_when_free_is_missing() -> None:
    results = [
        series("DCGM_FI_DEV_FB_USED_BYTES", str(1000 * f.MIB)),
        series("DCGM_FI_DEV_FB_CAPACITY_BYTES", str(81920 * f.MIB)),
    ]
    (sample,) = f.merge_readings(f.parse_results(results).readings)
    assert (sample.mem_used_mib, sample.mem_free_mib) == (1000.0, 80920.0)


def test_merge_ignores_plain_pod_label_on_a_target_whose_pod_labels_were_renamed() -> None:
    target = {"instance": "10.0.0.5:9400", "pod": "dcgm-exporter-x", "namespace": "gpu-operator"}
    results = [
        series("DCGM_FI_DEV_GPU_UTIL", "90", gpu="0", exported_pod="job-1", exported_namespace="ml", **target),
        series("DCGM_FI_DEV_GPU_UTIL", "0", gpu="1", **target),  # not held: only the target's labels
        series("DCGM_FI_DEV_GPU_UTIL", "0", gpu="0", Hostname="node-b", pod="job-2", namespace="ml", instance="10.0.0.6:9400"),
    ]
    samples = {s.key: s for s in f.merge_readings(f.parse_results(results).readings)}
    assert samples["node-a/0"].pod == PodRef(namespace="ml", name="job-1")
    assert samples["node-a/1"].pod is None
    assert samples["node-b/0"].pod == PodRef(namespace="ml", name="job-2")  # another target keeps plain labels


def test_plain_pod_label_naming_the_exporter_itself_is_not_a_holder() -> None:
    r = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", pod="nvidia-dcgm-exporter-7x2kq", namespace="gpu-operator"))
    assert isinstance(r, Reading) and r.pod is None


def test_exported_pod_keeps_the_plain_container_when_the_target_had_none() -> None:
    r = f.parse_series(series("DCGM_FI_DEV_GPU_UTIL", "0", pod="gpu-metrics-x", namespace="gpu-operator", exported_pod="job-1", exported_namespace="ml", container="main"))
    assert isinstance(r, Reading) and r.pod == PodRef(namespace="ml", name="job-1", container="main")


def test_mig_instance_utilisation_prefers_the_profiling_ratio_over_a_zero_gpu_util() -> None:
    mig = {"GPU_I_PROFILE": "3g.40gb", "GPU_I_ID": "2"}
    results = [
        series("DCGM_FI_DEV_GPU_UTIL", "0", **mig),  # what some exporter versions report for MIG
        series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.6", **mig),
        series("DCGM_FI_DEV_GPU_UTIL", "30"),  # the whole-GPU rule is unchanged
        series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.9"),
    ]
    samples = {s.key: s for s in f.merge_readings(f.parse_results(results).readings)}
    assert samples["node-a/1/mig2"].util_pct == 60.0
    assert samples["node-a/1"].util_pct == 30.0


# dcgm-exporter's default labels on a MIG instance held by a pod (render_metrics.go), and what Prometheus
# adds or renames when the scrape target has pod labels of its own (honor_labels off): the upstream shape.
UPSTREAM = {
    "gpu": "0", "UUID": "GPU-aaaa-0001", "pci_bus_id": "00000000:07:00.0", "device": "nvidia0",
    "modelName": "NVIDIA A100-SXM4-80GB", "GPU_I_PROFILE": "1g.10gb", "GPU_I_ID": "9", "Hostname": "node-a",
    "DCGM_FI_DRIVER_VERSION": "550.54.15", "exported_container": "trainer", "exported_namespace": "ml",
    "exported_pod": "trainer-0", "pod": "nvidia-dcgm-exporter-x7k2p", "namespace": "gpu-operator",
    "container": "nvidia-dcgm-exporter", "instance": "10.0.0.7:9400", "job": "gpu-metrics", "service": "dcgm",
}


@pytest.mark.parametrize("spelling", ["exported", "plain", "legacy"])
def test_the_labels_read_are_all_a_reading_needs(spelling: str) -> None:
    labels = dict(UPSTREAM)
    if spelling != "exported":  # honor_labels on: the exporter's own names
        for name in ("exported_pod", "exported_namespace", "exported_container"):
            labels[name.removeprefix("exported_")] = labels.pop(name)
    if spelling == "legacy":  # --use-old-namespace
        labels |= {"uuid": labels.pop("UUID"), "pod_name": labels.pop("pod"), "pod_namespace": labels.pop("namespace"),
                   "container_name": labels.pop("container")}
    full = {"metric": {"__name__": "DCGM_FI_PROF_GR_ENGINE_ACTIVE", **labels}, "value": [1700000000.0, "0.25"]}
    kept = {"metric": {k: v for k, v in full["metric"].items() if k in (*f.LABELS_READ, "__name__")}, "value": full["value"]}
    assert set(full["metric"]) - set(kept["metric"]) >= {"pci_bus_id", "device", "DCGM_FI_DRIVER_VERSION", "job", "service"}
    reading = f.parse_series(full)
    assert isinstance(reading, Reading) and reading.pod is not None and reading.gpu.uuid == "GPU-aaaa-0001"
    assert f.parse_series(kept) == reading


def test_an_answer_is_decoded_to_what_parse_series_reads_and_one_off_that_shape_in_full() -> None:
    good = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "Hostname": "n", "gpu": "0"}, "value": [1.5, "7"]}]}}  # fmt: skip
    [one] = f.decode_results(json.dumps(good).encode())
    assert isinstance(f.parse_series(one), Reading)
    odd = json.loads(json.dumps(good))
    odd["data"]["result"].append({"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "Hostname": 5, "gpu": "1"}, "value": [1.5, "7"]})
    kept, garbled = f.decode_results(json.dumps(odd).encode())  # the odd one read in full, judged on its own
    assert kept["metric"] == good["data"]["result"][0]["metric"] and isinstance(f.parse_series(kept), Reading)
    assert f.parse_series(garbled) == f.Rejection("no Hostname label")
    assert list(f.decode_results(b'{"data": {"resultType": "scalar", "result": [1.5, "2"]}}')) == [1.5, "2"]
    assert f.decode_results(b'{"data": {"result": "none"}}') == "none"  # no list: the caller refuses it
    with pytest.raises(ValueError):
        f.decode_results(b'{"data": ')


def test_results_decode_each_series_as_it_is_read_and_again_on_each_pass() -> None:
    body = json.dumps({"data": {"result": [{"metric": {"gpu": str(i)}, "value": [1.0, "0"]} for i in range(3)]}}).encode()
    results = f.decode_results(body)
    assert isinstance(results, f.Results) and len(results) == 3
    first, again = list(results), list(results)
    assert first == again and first[2] == {"metric": {"gpu": "2"}, "value": (1.0, "0")}
    assert first[0] is not again[0]  # nothing kept between passes: the caller holds what it needs


def test_parse_results_says_when_the_answer_was_evaluated() -> None:
    def series(at: object, host: str = "n") -> dict[str, object]:
        return {"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "Hostname": host, "gpu": "0"}, "value": [at, "1"]}

    parsed = f.parse_results([series(1_700_000_010.5), series(1_700_000_010.25, "m"), series("soon"), series(float("nan"))])
    assert parsed.evaluated_at == 1_700_000_010.25  # the value is read, its time only for this
    assert f.parse_results([series(1e20), series(None), {"metric": {}}]).evaluated_at is None
    assert f.parse_results([]).evaluated_at is None


def test_a_merger_fed_one_answer_at_a_time_in_any_order_merges_as_all_at_once() -> None:
    target = {"instance": "10.0.0.5:9400", "pod": "dcgm-exporter-x", "namespace": "gpu-operator"}
    answers = [  # in query order: utilisation, used memory, temperature
        [  # node-a/1 is time-sliced: each detailed answer names another of its pods
            series("DCGM_FI_DEV_GPU_UTIL", "5", pod="p-util", namespace="ml"),
            series("DCGM_FI_DEV_GPU_UTIL", "0", gpu="0", **target),  # plain labels of a target renamed below
        ],
        [
            series("DCGM_FI_DEV_FB_USED", "100", pod="p-mem", namespace="ml"),
            series("DCGM_FI_DEV_FB_USED", "7", gpu="0", exported_pod="job-1", exported_namespace="ml", **target),
        ],
        [series("DCGM_FI_DEV_GPU_TEMP", "40"), series("DCGM_FI_DEV_GPU_TEMP", "41", gpu="0")],
    ]
    parsed = [f.parse_results(a).readings for a in answers]
    whole = f.merge_readings(r for readings in parsed for r in readings)
    held = {s.key: s.pod for s in whole}
    assert held == {"node-a/1": PodRef(namespace="ml", name="p-util"), "node-a/0": PodRef(namespace="ml", name="job-1")}
    for arrival in itertools.permutations(range(len(answers))):
        merger = f.ReadingsMerger()
        for order in arrival:
            merger.add(parsed[order], order)
        assert sorted(merger.samples(), key=lambda s: s.key) == sorted(whole, key=lambda s: s.key), arrival
