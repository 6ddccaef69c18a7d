"""A dcgm-exporter for the simulated fleet: GET /metrics in Prometheus text format.

One endpoint serves every node of a `gpuctl.sim` fleet (each series carries
its node in the Hostname label, as dcgm-exporter does with NODE_NAME set),
with values from `FleetTelemetry` at (now - start) seconds, so real
Prometheus scraping it sees smooth, deterministic GPUs.

What it copies from the real exporter (NVIDIA/dcgm-exporter, DCGM issues):
- metric names, HELP texts and types of etc/default-counters.csv, plus
  DCGM_FI_PROF_GR_ENGINE_ACTIVE (a ratio) as when profiling metrics are on;
- labels gpu, UUID, pci_bus_id, device, modelName, GPU_I_PROFILE/GPU_I_ID
  (MIG only), Hostname, DCGM_FI_DRIVER_VERSION, container/namespace/pod;
- MIG: only per-instance series, no series for the parent GPU; device-level
  fields (temperature, power, clocks, XID) repeat the parent's value on each
  instance; DCGM_FI_DEV_GPU_UTIL is not reported for instances (or, with
  mig_gpu_util="zero", reported as 0 as some versions do);
- integer fields print as integers, float fields with six decimals.

generation="4.9" emits the renamed fields and units (ratios 0-1, bytes) for
the quantities whose 4.9 names gpuctl knows (gpuctl/sources/dcgm_fields.py,
from the release notes; unverified against a real 4.9 exporter), with the
DCGM_FI_SYSTEM_DRIVER_VERSION and lowercase `hostname` labels; fields whose
4.9 names are unknown (clocks, energy, memory temperature) are left out.

By default it serves what dcgm-exporter serves on datacenter GPUs with
profiling metrics on: DCGM_FI_DEV_GPU_UTIL and DCGM_FI_PROF_GR_ENGINE_ACTIVE
for the same GPU with the same labels.

Test hooks: `extra_lines` are appended verbatim (malformed series),
`fail_status` makes /metrics answer with that HTTP status, `freeze(node)`
keeps serving a node's values as of that moment (an exporter whose DCGM
hangs), and `stop_serving(node)` leaves a node's series out (its exporter is
gone; Prometheus keeps answering with its last values for its lookback if
it never saw the series disappear, e.g. across a Prometheus restart) until
`serve_again(node)`.

    python -m testbed.dcgm_exporter --port 9400 [--seed 7] [--scale 1] [--generation classic]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from aiohttp import web

from gpuctl.sim import catalog
from gpuctl.sim.fleet import Fleet, SimGpu, build_fleet
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.state.records import GpuSample
from testbed.http import LoopbackServer

Generation = Literal["classic", "4.9"]
MIB = 1024 * 1024
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Field:
    classic: str
    new: str | None  # the 4.9 name, None when unknown
    kind: Literal["gauge", "counter"]
    help: str
    scale_49: float = 1.0  # classic unit -> 4.9 unit
    integer: bool = True
    classic_default: bool = True  # in the classic default-counters.csv

    def name(self, generation: Generation) -> str | None:
        if generation == "4.9":
            return self.new
        return self.classic if self.classic_default else None


FIELDS: tuple[Field, ...] = (
    Field("DCGM_FI_DEV_SM_CLOCK", None, "gauge", "SM clock frequency (in MHz)."),
    Field("DCGM_FI_DEV_MEM_CLOCK", None, "gauge", "Memory clock frequency (in MHz)."),
    Field("DCGM_FI_DEV_MEMORY_TEMP", None, "gauge", "Memory temperature (in C)."),
    Field("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "gauge", "GPU temperature (in C)."),
    Field("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_BOARD_POWER_WATTS", "gauge", "Power draw (in W).", integer=False),
    Field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", None, "counter", "Total energy consumption since boot (in mJ)."),
    Field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", None, "counter", "Total number of PCIe retries."),
    Field("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO", "gauge", "GPU utilization (in %).", 0.01),
    Field("DCGM_FI_DEV_MEM_COPY_UTIL", None, "gauge", "Memory utilization (in %)."),
    Field("DCGM_FI_DEV_ENC_UTIL", None, "gauge", "Encoder utilization (in %)."),
    Field("DCGM_FI_DEV_DEC_UTIL", None, "gauge", "Decoder utilization (in %)."),
    Field("DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_XID_ERROR", "gauge", "Value of the last XID error encountered."),
    Field("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_FREE_BYTES", "gauge", "Framebuffer memory free (in MiB).", MIB),
    Field("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED_BYTES", "gauge", "Framebuffer memory used (in MiB).", MIB),
    Field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", "gauge",
          "Ratio of time the graphics engine is active.", integer=False),
    # 4.9 collects total memory by default; classic's FB_TOTAL is not a default counter.
    Field("DCGM_FI_DEV_FB_TOTAL", "DCGM_FI_DEV_FB_CAPACITY_BYTES", "gauge", "Total framebuffer memory.", MIB,
          classic_default=False),
)


@dataclass(frozen=True, slots=True)
class Options:
    generation: Generation = "classic"
    driver_version: str | None = None  # None: the pool's driver from the catalog
    hostname_label: str | None = None  # None: "Hostname" (classic) / "hostname" (4.9)
    mig_gpu_util: Literal["absent", "zero"] = "absent"
    kubernetes: bool = True  # pod/namespace/container labels for GPUs held by pods
    legacy_labels: bool = False  # --use-old-namespace: uuid, pod_name, pod_namespace, container_name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _energy_mj(gpu: SimGpu, mean_power_w: float, t: float) -> int:
    """A monotonic counter: energy since a boot 2-41 days before the start, at a mean power."""
    seed = int.from_bytes(hashlib.blake2b(gpu.uuid.encode(), digest_size=4).digest(), "little")
    uptime_s = 86400 * (2 + seed % 40)
    return int((uptime_s + t) * mean_power_w * 1000)


def device_values(gpu: SimGpu, s: GpuSample, t: float, options: Options) -> dict[str, float]:
    """Every classic field's value for one device, in classic units."""
    model = catalog.MODELS_BY_NAME[gpu.model]
    power = s.power_w or 0.0
    load = min(max((power - model.idle_w) / (model.tdp_w - model.idle_w), 0.0), 1.0)
    temp = s.temp_c or 0.0
    util = s.util_pct or 0.0
    values: dict[str, float] = {
        "DCGM_FI_DEV_SM_CLOCK": round(210 + (model.max_sm_mhz - 210) * min(1.0, 1.6 * load)),
        "DCGM_FI_DEV_MEM_CLOCK": model.mem_mhz if model.hbm or load > 0.05 else 405,
        "DCGM_FI_DEV_GPU_TEMP": round(temp),
        "DCGM_FI_DEV_POWER_USAGE": power,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": _energy_mj(gpu, model.idle_w + (model.tdp_w - model.idle_w) * 0.5, t),
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 0,
        "DCGM_FI_DEV_MEM_COPY_UTIL": round(util * 0.45),
        "DCGM_FI_DEV_ENC_UTIL": 0,
        "DCGM_FI_DEV_DEC_UTIL": 0,
        "DCGM_FI_DEV_XID_ERRORS": s.xid or 0,
        "DCGM_FI_DEV_FB_FREE": s.mem_free_mib or 0,
        "DCGM_FI_DEV_FB_USED": s.mem_used_mib or 0,
        "DCGM_FI_DEV_FB_TOTAL": gpu.mem_total_mib,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": round(util / 100, 6),
    }
    if model.hbm:  # GDDR parts report no memory temperature: the exporter skips the blank
        values["DCGM_FI_DEV_MEMORY_TEMP"] = round(temp + 4)
    if gpu.mig_profile is None or options.mig_gpu_util == "zero":
        values["DCGM_FI_DEV_GPU_UTIL"] = 0 if gpu.mig_profile else round(util)
    return values


def _labels(gpu: SimGpu, s: GpuSample, driver: str, options: Options) -> str:
    legacy, new = options.legacy_labels, options.generation == "4.9"
    pairs = [
        ("gpu", str(gpu.index)),
        ("uuid" if legacy else "UUID", gpu.uuid),
        ("pci_bus_id", gpu.pci_bus_id),
        ("device", f"nvidia{gpu.index}"),
        ("modelName", gpu.model),
    ]
    if gpu.mig_profile is not None:
        pairs += [("GPU_I_PROFILE", gpu.mig_profile), ("GPU_I_ID", str(gpu.mig_instance))]
    pairs.append((options.hostname_label or ("hostname" if new else "Hostname"), gpu.node))
    pairs.append(("DCGM_FI_SYSTEM_DRIVER_VERSION" if new else "DCGM_FI_DRIVER_VERSION", driver))
    if options.kubernetes and s.pod is not None:
        names = ("container_name", "pod_namespace", "pod_name") if legacy else ("container", "namespace", "pod")
        pairs += list(zip(names, (s.pod.container or "", s.pod.namespace, s.pod.name), strict=True))
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def render(
    fleet: Fleet,
    samples: list[GpuSample],
    t: float,
    options: Options = Options(),
    *,
    node_t: Mapping[str, float] | None = None,
) -> str:
    """The /metrics body for these samples (one per device, in fleet order); `node_t`: the sim time of
    nodes whose samples are from another time than `t` (frozen ones), for their counters."""
    node_t = node_t or {}
    drivers = {p.name: p.driver for p in catalog.POOLS}
    pools = {n.name: n.pool for n in fleet.nodes}
    rows = []
    for s in samples:
        gpu = fleet.gpu_by_key[s.key]
        driver = options.driver_version or drivers[pools[gpu.node]]
        rows.append((_labels(gpu, s, driver, options), device_values(gpu, s, node_t.get(gpu.node, t), options)))
    out: list[str] = []
    for f in FIELDS:
        name = f.name(options.generation)
        if name is None:
            continue
        scale = f.scale_49 if options.generation == "4.9" else 1.0
        series = [(labels, values[f.classic] * scale) for labels, values in rows if f.classic in values]
        if not series:
            continue
        out += [f"# HELP {name} {f.help}", f"# TYPE {name} {f.kind}"]
        integer = f.integer and scale >= 1
        out += [f"{name}{{{labels}}} {int(v) if integer else f'{v:f}'}" for labels, v in series]
    return "\n".join(out) + "\n"


class DcgmExporterSim(LoopbackServer):
    """The HTTP server. `url` is the full /metrics URL, `target` the host:port to scrape."""

    def __init__(
        self,
        fleet: Fleet,
        seed: int = 7,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        generation: Generation | None = None,  # shorthand for options.generation
        options: Options = Options(),
        nodes: Collection[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host=host, port=port)
        self.options = options if generation is None else replace(options, generation=generation)
        self.extra_lines: list[str] = []
        self.fail_status: int | None = None
        self.scrapes = 0
        self._nodes = set(nodes) if nodes is not None else None
        self._hidden: set[str] = set()
        self._frozen: dict[str, float] = {}  # node -> the sim time its values froze at
        self._clock = clock
        self._start = clock()
        self.seed = seed
        self.set_fleet(fleet)

    def set_fleet(self, fleet: Fleet) -> None:
        """Serve another fleet from now on (e.g. after the loader learned where pods really run)."""
        self.fleet = fleet
        self._telemetry = FleetTelemetry(fleet, self.seed)

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def freeze(self, *nodes: str) -> None:
        """Serve these nodes' values as they are now, from now on (a hung DCGM behind a live exporter)."""
        t = self._clock() - self._start
        self._frozen.update({node: t for node in nodes})

    def stop_serving(self, *nodes: str) -> None:
        """Leave these nodes' series out of /metrics from now on."""
        self._hidden.update(nodes)

    def serve_again(self, *nodes: str) -> None:
        """Undo stop_serving: the nodes' exporters are back (with a gap in their series)."""
        self._hidden.difference_update(nodes)

    def body(self) -> str:
        t = self._clock() - self._start
        samples = self._telemetry.samples_at(t)
        if self._frozen:
            then = {
                s.key: s
                for frozen_t in set(self._frozen.values())
                for s in self._telemetry.samples_at(frozen_t)
                if self._frozen.get(s.hostname) == frozen_t
            }
            samples = [then.get(s.key, s) for s in samples]
        samples = [
            s for s in samples if s.hostname not in self._hidden and (self._nodes is None or s.hostname in self._nodes)
        ]
        text = render(self.fleet, samples, t, self.options, node_t=self._frozen)
        return text + "".join(line + "\n" for line in self.extra_lines)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="simulated exporter failure\n")
        return web.Response(body=self.body().encode(), headers={"Content-Type": CONTENT_TYPE})


async def _serve(args: argparse.Namespace) -> None:
    fleet = build_fleet(args.seed, scale=args.scale)
    sim = DcgmExporterSim(fleet, args.seed, host=args.host, port=args.port, generation=args.generation)
    await sim.start()
    print(f"serving {len(fleet.gpus)} GPU devices on {sim.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.dcgm_exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--generation", choices=("classic", "4.9"), default="classic")
    try:
        asyncio.run(_serve(parser.parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
