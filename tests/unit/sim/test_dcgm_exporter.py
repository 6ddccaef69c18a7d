"""The simulated dcgm-exporter: valid exposition, dcgm-exporter's names and labels, a real HTTP server."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import sys
from collections import Counter

import aiohttp
import pytest

from gpuctl.sim import build_fleet
from gpuctl.sim.fleet import Fleet
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.sources import dcgm_fields
from testbed.dcgm_exporter import DcgmExporterSim, Options, render
from testbed.process import free_port

T = 321.0
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\",?)*)\} (\S+)$")
LABEL_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\]|\\.)*)\"")
# promtool's lint complaints about dcgm-exporter's own naming, which we copy on purpose.
DCGM_NAMING_LINT = ("snake_case", '"_total" suffix', "should not include type")

Series = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Series:
    """A strict reader of the text format: HELP and TYPE once per family, before its samples."""
    typed: dict[str, str] = {}
    helped: set[str] = set()
    out: Series = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in typed and kind in ("gauge", "counter"), line
            typed[name] = kind
        else:
            m = SAMPLE_RE.match(line)
            assert m, line
            name, labels, value = m.groups()
            assert name in typed, f"sample before its TYPE: {line}"
            out.append((name, dict(LABEL_RE.findall(labels)), float(value)))
    return out


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet()


@pytest.fixture(scope="module")
def classic(fleet: Fleet) -> Series:
    return parse(render(fleet, FleetTelemetry(fleet).samples_at(T), T))


def device_key(labels: dict[str, str]) -> str:
    host = labels.get("Hostname") or labels["hostname"]
    base = f"{host}/{labels['gpu']}"
    return f"{base}/mig{labels['GPU_I_ID']}" if "GPU_I_ID" in labels else base


def test_every_device_every_field_with_dcgm_labels(fleet: Fleet, classic: Series) -> None:
    names = Counter(name for name, _, _ in classic)
    devices, mig = len(fleet.gpus), sum(1 for g in fleet.gpus if g.mig_profile)
    hbm = sum(1 for g in fleet.gpus if "A100" in g.model or "H100" in g.model)
    assert names["DCGM_FI_DEV_GPU_TEMP"] == names["DCGM_FI_DEV_FB_USED"] == names["DCGM_FI_DEV_XID_ERRORS"] == devices
    assert names["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] == names["DCGM_FI_DEV_POWER_USAGE"] == devices
    assert names["DCGM_FI_DEV_GPU_UTIL"] == devices - mig, "DCGM reports no GPU_UTIL for MIG instances"
    assert names["DCGM_FI_DEV_MEMORY_TEMP"] == hbm
    assert "DCGM_FI_DEV_FB_TOTAL" not in names  # not a default counter
    holders = fleet.pod_by_gpu
    for name, labels, _ in classic:
        gpu = fleet.gpu_by_key[device_key(labels)]
        assert labels["UUID"] == gpu.uuid and labels["pci_bus_id"] == gpu.pci_bus_id
        assert labels["device"] == f"nvidia{gpu.index}" and labels["modelName"] == gpu.model
        assert re.fullmatch(r"\d+\.\d+\.\d+", labels["DCGM_FI_DRIVER_VERSION"])
        assert labels.get("GPU_I_PROFILE") == gpu.mig_profile
        pod = holders.get(gpu.key)
        if pod is None:
            assert not {"pod", "namespace", "container"} & set(labels), name
        else:
            assert (labels["pod"], labels["namespace"], labels["container"]) == (pod.name, pod.namespace, pod.container)


def test_promtool_parses_it(fleet: Fleet) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"  # Debian's prometheus package, as the test bed uses
    for options in (Options(), Options(generation="4.9")):
        text = render(fleet, FleetTelemetry(fleet).samples_at(T), T, options)
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        problems = {line for line in (done.stdout + done.stderr).splitlines() if line}
        assert done.returncode in (0, 3), problems  # 3: lint complaints only
        assert not [p for p in problems if not any(k in p for k in DCGM_NAMING_LINT)]


@pytest.mark.parametrize("generation", ["classic", "4.9"])
def test_gpuctl_reads_back_what_the_simulator_means(fleet: Fleet, generation: str) -> None:
    """Through gpuctl's own DCGM parser, the exposition gives back the telemetry samples."""
    samples = FleetTelemetry(fleet).samples_at(T)
    series = parse(render(fleet, samples, T, Options(generation=generation)))  # type: ignore[arg-type]
    # what PrometheusSource's queries would return: only the names it asks for
    results = [
        {"metric": {"__name__": n, **labels}, "value": [T, repr(v)]} for n, labels, v in series if n in dcgm_fields.BY_NAME
    ]
    parsed = dcgm_fields.parse_results(results)
    assert parsed.rejected == 0
    read = {s.key: s for s in dcgm_fields.merge_readings(parsed.readings)}
    assert set(read) == {s.key for s in samples}
    for want in samples:
        got = read[want.key]
        assert (got.uuid, got.model, got.mig_profile, got.pod, got.xid) == (
            want.uuid, want.model, want.mig_profile, want.pod, want.xid
        )
        for field in ("util_pct", "mem_used_mib", "mem_free_mib", "temp_c", "power_w"):
            assert math.isclose(getattr(got, field), getattr(want, field), abs_tol=1e-6), (want.key, field)


def test_4_9_names_units_and_labels(fleet: Fleet) -> None:
    series = parse(render(fleet, FleetTelemetry(fleet).samples_at(T), T, Options(generation="4.9")))
    names = {n for n, _, _ in series}
    assert not any(n in names for n in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP"))
    assert {"DCGM_FI_DEV_GPU_UTIL_RATIO", "DCGM_FI_DEV_FB_USED_BYTES", "DCGM_FI_DEV_FB_CAPACITY_BYTES"} <= names
    for name, labels, value in series:
        assert "hostname" in labels and "Hostname" not in labels
        assert "DCGM_FI_SYSTEM_DRIVER_VERSION" in labels and "DCGM_FI_DRIVER_VERSION" not in labels
        if name.endswith("_RATIO"):
            assert 0 <= value <= 1
        if name == "DCGM_FI_DEV_FB_CAPACITY_BYTES":
            assert value == fleet.gpu_by_key[device_key(labels)].mem_total_mib * 1024 * 1024


def test_options_mig_util_zero_legacy_labels_no_pods(fleet: Fleet) -> None:
    samples = FleetTelemetry(fleet).samples_at(T)
    zero = parse(render(fleet, samples, T, Options(mig_gpu_util="zero")))
    mig_util = [v for n, labels, v in zero if n == "DCGM_FI_DEV_GPU_UTIL" and "GPU_I_ID" in labels]
    assert len(mig_util) == sum(1 for g in fleet.gpus if g.mig_profile) and set(mig_util) == {0}
    legacy = parse(render(fleet, samples, T, Options(legacy_labels=True)))
    held = [labels for _, labels, _ in legacy if "pod_name" in labels]
    assert held and all("uuid" in lb and "pod_namespace" in lb and "pod" not in lb for lb in held)
    bare = parse(render(fleet, samples, T, Options(kubernetes=False, hostname_label="hostname")))
    assert not any("pod" in labels for _, labels, _ in bare)
    assert all("hostname" in labels for _, labels, _ in bare)


def test_counters_only_grow(fleet: Fleet) -> None:
    telemetry = FleetTelemetry(fleet)

    def energy(t: float) -> dict[str, float]:
        series = parse(render(fleet, telemetry.samples_at(t), t))
        return {device_key(lb): v for n, lb, v in series if n == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}

    before, after = energy(10), energy(70)
    assert before.keys() == after.keys() and all(after[k] > before[k] for k in before)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fetch(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_http_server_serves_scrapes_fails_and_restarts(fleet: Fleet) -> None:
    clock = Clock()
    sim = DcgmExporterSim(fleet, seed=7, clock=clock)
    async with sim:
        clock.now += T
        status, content_type, body = await fetch(sim.url)
        assert status == 200 and content_type.startswith("text/plain") and "version=0.0.4" in content_type
        assert body == render(fleet, FleetTelemetry(fleet, 7).samples_at(T), T)
        assert sim.url == f"http://{sim.target}/metrics" and sim.port > 0

        sim.extra_lines = ['DCGM_FI_DEV_GPU_UTIL{gpu="x",Hostname="bad"} 12', "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} NaN"]
        _, _, body = await fetch(sim.url)
        assert body.endswith('DCGM_FI_DEV_GPU_UTIL{gpu="x",Hostname="bad"} 12\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} NaN\n')
        sim.extra_lines.clear()

        sim.fail_status = 500
        status, _, _ = await fetch(sim.url)
        assert status == 500
        sim.fail_status = None
        assert sim.scrapes == 3
    port = sim.port
    with pytest.raises(aiohttp.ClientError):
        await fetch(sim.url)
    await sim.start()  # the same port again, as a restarted exporter
    try:
        assert sim.port == port
        assert (await fetch(sim.url))[0] == 200
    finally:
        await sim.stop()


def test_a_frozen_node_serves_the_same_values_and_a_stopped_one_none(fleet: Fleet) -> None:
    clock = Clock()
    sim = DcgmExporterSim(fleet, seed=7, clock=clock)
    frozen, gone = fleet.nodes[0].name, fleet.nodes[1].name

    def values(body: str) -> dict[str, dict[tuple[str, str], float]]:
        out: dict[str, dict[tuple[str, str], float]] = {}
        for name, labels, value in parse(body):
            out.setdefault(labels["Hostname"], {})[(name, device_key(labels))] = value
        return out

    clock.now += T
    before = values(sim.body())
    sim.freeze(frozen)
    sim.stop_serving(gone)
    clock.now += 37
    after = values(sim.body())
    assert after[frozen] == before[frozen]  # every field, the energy counter included
    assert gone not in after
    others = [n.name for n in fleet.nodes[2:]]
    assert all(after[n] != before[n] for n in others)  # the rest keep moving (power at least)
    sim.serve_again(gone)
    assert gone in values(sim.body())


async def test_one_exporter_per_node_in_either_generation(fleet: Fleet) -> None:
    node = fleet.nodes[0].name
    async with DcgmExporterSim(fleet, nodes=[node], generation="4.9") as sim:
        _, _, body = await fetch(sim.url)
    series = parse(body)
    assert {labels["hostname"] for _, labels, _ in series} == {node}
    assert "DCGM_FI_DEV_FB_USED_BYTES" in {name for name, _, _ in series}


async def test_set_fleet_moves_pod_labels(fleet: Fleet) -> None:
    from dataclasses import replace

    sim = DcgmExporterSim(fleet)
    first = fleet.pods[0]
    sim.set_fleet(replace(fleet, pods=fleet.pods[1:]))
    series = parse(sim.body())
    assert not any(labels.get("pod") == first.name for _, labels, _ in series)


async def test_standalone_command() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "testbed.dcgm_exporter", "--port", str(port), "--seed", "3",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert f"127.0.0.1:{port}/metrics" in line.decode()
        status, _, body = await fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        hosts = {labels["Hostname"] for _, labels, _ in parse(body)}
        assert hosts == {n.name for n in build_fleet(3).nodes}
    finally:
        proc.terminate()
        await proc.wait()
