"""Deterministic GPU telemetry for a simulated fleet: what DCGM would report at time t.

Every value is a pure function of (fleet, seed, t): sums of sines with
per-GPU periods and phases, so the numbers move smoothly, differ between
GPUs, and a test (or Prometheus scraping the test bed twice) sees exactly
the same value for the same t. Behaviour comes from the pod holding the
GPU; free GPUs idle at 0 % with no pod.

MIG instances have their own utilisation and memory; temperature, power
and XID belong to the physical GPU, so every instance of a GPU reports its
parent's (as dcgm-exporter does).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

from gpuctl.model import PodRef
from gpuctl.sim import catalog
from gpuctl.sim.catalog import GpuModel
from gpuctl.sim.fleet import Fleet, SimGpu, SimPod
from gpuctl.sim.workloads import Behaviour
from gpuctl.state.records import GpuSample

TAU = 2 * math.pi
STEP = 1000  # devices per step of the stepped forms (~10-20 ms of work; each step waits its turn for the GIL)
HOT_TEMP_C = 88.0
MIG_SLICES = 7


@dataclass(frozen=True, slots=True)
class _Params:
    """Per-device constants drawn from a hash of (seed, key): stable whatever else changes."""

    fast: tuple[float, float]  # period s, phase
    medium: tuple[float, float]
    slow: tuple[float, float]
    burst: tuple[float, float]
    level: float  # 0-1: where in its behaviour's range this device sits
    ambient_c: float
    efficiency: float  # share of the TDP a fully busy GPU draws

    @staticmethod
    def of(seed: int, key: str) -> _Params:
        raw = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=40).digest()
        u = [x / 2**32 for x in struct.unpack("<10I", raw)]
        return _Params(
            fast=(11 + 19 * u[0], TAU * u[1]),
            medium=(60 + 180 * u[2], TAU * u[3]),
            slow=(600 + 1200 * u[4], TAU * u[5]),
            burst=(240 + 600 * u[6], TAU * u[7]),
            level=u[8],
            ambient_c=28 + 6 * u[9],
            efficiency=0.8 + 0.15 * u[9],
        )

    def noise(self, t: float) -> float:
        """Smooth noise in [-1, 1]."""
        return 0.4 * _wave(t, self.fast) + 0.6 * _wave(t, self.medium)


def _wave(t: float, wave: tuple[float, float]) -> float:
    return math.sin(TAU * t / wave[0] + wave[1])


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def util_pct(behaviour: Behaviour | None, p: _Params, t: float) -> float:
    n = p.noise(t)
    if behaviour is None:
        return 0.0
    if behaviour == "idle":
        return 1 + n  # 0-2 %: under any sane idle threshold
    if behaviour == "hot":
        return 95 + 4 * n
    if behaviour == "memory-full":
        return 78 + 14 * n
    if behaviour == "bursty":
        duty = _smoothstep((_wave(t, p.burst) + 0.3) / 0.6)
        return 10 + 80 * duty + 4 * n  # 6-14 % between bursts: quiet, not idle
    return 82 + 14 * n  # busy: 68-96 %


def mem_fraction(behaviour: Behaviour | None, p: _Params, t: float) -> float:
    drift = _wave(t, p.slow)
    if behaviour is None:
        return 0.0
    if behaviour == "idle":
        return 0.18 + 0.37 * p.level + 0.002 * drift  # a model still loaded
    if behaviour == "memory-full":
        return 0.975 + 0.015 * drift
    if behaviour == "hot":
        return 0.72 + 0.15 * p.level + 0.02 * drift
    return 0.56 + 0.3 * p.level + 0.03 * drift


@dataclass(frozen=True, slots=True)
class _Device:
    gpu: SimGpu
    model: GpuModel
    params: _Params
    parent: str  # "node/index"
    slices: int  # compute slices it holds out of 7 (7 for a whole GPU)
    pod: PodRef | None
    behaviour: Behaviour | None
    xid: int
    holder: SimPod | None  # the pod it was built for: a rebind reuses the device while the same pod holds it


class FleetTelemetry:
    """Samples of every GPU device of a fleet at sim time t (seconds since the start).

    Sampling is a Python loop over every device (22,000 at the bench's scale 220:
    most of a second). `samples_at` does it at once (the test bed's exporter);
    `sample_steps`, and `rebind_steps` when the nodes changed, do their work in steps
    of `STEP` devices, so the demo source can let the event loop serve between them
    (a worker thread would not help: this is CPU-bound Python, and under the GIL it
    slowed every I/O wake-up of the loop)."""

    def __init__(self, fleet: Fleet, seed: int = 7, *, _params: dict[str, _Params] | None = None, _bind: bool = True) -> None:
        self.fleet = fleet
        self.seed = seed
        self._params = _params if _params is not None else {}
        self._devices: tuple[_Device, ...] = ()
        self._index: dict[str, int] = {}  # GPU key -> its device's place in _devices (fleet.gpus' order)
        self._parent_params: dict[str, _Params] = {}
        self._parent_model: dict[str, GpuModel] = {}
        if _bind:
            _run(self._bind_steps({}))

    def rebind_steps(self, fleet: Fleet) -> Generator[None, None, FleetTelemetry]:
        """The same GPUs with other pods on them (after churn or an eviction); the new telemetry is the
        generator's return value. Reuses the per-GPU constants, and the devices whose GPU, pod and XID are
        unchanged. On the same nodes only the devices whose holder or XID changed are rebuilt (a churn tick or
        an eviction moves a few pods of thousands), at once; new nodes rebuild every device, in steps (see
        the class doc)."""
        bound = FleetTelemetry(fleet, self.seed, _params=self._params, _bind=False)
        if fleet.nodes is self.fleet.nodes and self._devices:
            bound._bind_changed(self)
            return bound
        yield from bound._bind_steps({id(d.gpu): d for d in self._devices})
        return bound

    def _bind_changed(self, before: FleetTelemetry) -> None:
        """`before`'s devices (same nodes, same order), rebuilt where the holder or the XID differs."""
        old, new = before.fleet, self.fleet
        moved: set[str] = set()
        if old.pods is not new.pods:
            was, now = old.pod_by_key, new.pod_by_key
            for key, pod in now.items():
                other = was.get(key)
                if other is not pod:
                    moved.update(pod.gpu_keys)
                    if other is not None:
                        moved.update(other.gpu_keys)
            for key in was.keys() - now.keys():
                moved.update(was[key].gpu_keys)
        if old.xid_faults is not new.xid_faults:
            moved.update(k for k in old.xid_faults.keys() | new.xid_faults.keys() if old.xid_faults.get(k) != new.xid_faults.get(k))
        self._index = before._index
        self._parent_params, self._parent_model = before._parent_params, before._parent_model
        devices = list(before._devices)
        holders, faults, gpus = new.pod_by_gpu, new.xid_faults, new.gpus
        for key in moved:
            at = self._index.get(key)
            if at is not None:  # a pod's device the nodes do not have is not measured (as in a full bind)
                devices[at] = self._device(gpus[at], holders.get(key), faults.get(key, 0))
        self._devices = tuple(devices)

    def _bind_steps(self, before: dict[int, _Device]) -> Generator[None, None, None]:
        """Build the devices; `before`: devices to reuse, by id() of their GPU (the GPU itself is compared)."""
        fleet = self.fleet
        holders, faults = fleet.pod_by_gpu, fleet.xid_faults
        devices: list[_Device] = []
        for n, gpu in enumerate(fleet.gpus, 1):
            key = gpu.key
            pod = holders.get(key)
            xid = faults.get(key, 0)
            same = before.get(id(gpu))
            if same is not None and same.gpu is gpu and same.holder is pod and same.xid == xid:
                devices.append(same)  # churn moves a few pods a tick: the other devices are as they were
            else:
                devices.append(self._device(gpu, pod, xid))
            if n % STEP == 0:
                yield
        self._devices = tuple(devices)
        self._index = {d.gpu.key: i for i, d in enumerate(devices)}
        for d in devices:
            if d.parent not in self._parent_model:
                self._parent_params[d.parent] = self._param(d.parent)
                self._parent_model[d.parent] = d.model

    def _device(self, gpu: SimGpu, pod: SimPod | None, xid: int) -> _Device:
        slices = MIG_SLICES if gpu.mig_profile is None else catalog.H100_PROFILES[gpu.mig_profile].slices
        return _Device(
            gpu=gpu,
            model=catalog.MODELS_BY_NAME[gpu.model],
            params=self._param(gpu.key),
            parent=f"{gpu.node}/{gpu.index}",
            slices=slices,
            pod=PodRef(namespace=pod.namespace, name=pod.name, container=pod.container) if pod else None,
            behaviour=pod.behaviour if pod else None,
            xid=xid,
            holder=pod,
        )

    def _param(self, key: str) -> _Params:
        p = self._params.get(key)
        if p is None:
            p = self._params[key] = _Params.of(self.seed, key)
        return p

    def samples_at(self, t: float) -> list[GpuSample]:
        samples: list[GpuSample] = []
        _run(self.sample_steps(t, samples))
        return samples

    def sample_steps(self, t: float, out: list[GpuSample]) -> Generator[None, None, None]:
        """`samples_at(t)` in steps (see the class doc), appended to `out`."""
        devices = self._devices
        utils: list[float] = []
        # The physical GPU: utilisation weighted by compute slices, hot if any tenant is.
        load: dict[str, float] = {}
        hot: set[str] = set()
        for n, d in enumerate(devices, 1):
            parent, behaviour = d.parent, d.behaviour
            if behaviour is None:  # a free GPU: 0 %, nothing to add to its parent's load
                utils.append(0.0)
                load.setdefault(parent, 0.0)
            else:
                u = util_pct(behaviour, d.params, t)
                utils.append(u)
                load[parent] = load.get(parent, 0.0) + u * d.slices / MIG_SLICES
                if behaviour == "hot":
                    hot.add(parent)
            if n % STEP == 0:
                yield
        physical: dict[str, tuple[float, float]] = {}
        append = out.append
        for n, (d, u) in enumerate(zip(devices, utils, strict=True), 1):
            gpu, parent = d.gpu, d.parent
            total = gpu.mem_total_mib
            # A free GPU uses no memory (mem_fraction(None, ...) is 0.0).
            used = 0 if d.behaviour is None else round(min(mem_fraction(d.behaviour, d.params, t), 1.0) * total)
            at_parent = physical.get(parent)
            if at_parent is None:
                at_parent = physical[parent] = self._physical(parent, load[parent], parent in hot, t)
            temp, power = at_parent
            append(GpuSample(
                hostname=gpu.node,
                index=gpu.index,
                uuid=gpu.uuid,
                model=gpu.model,
                mig_profile=gpu.mig_profile,
                mig_instance=gpu.mig_instance,
                pod=d.pod,
                util_pct=float(round(min(max(u, 0.0), 100.0))),
                mem_used_mib=float(used),
                mem_free_mib=float(total - used),
                temp_c=temp,
                power_w=power,
                xid=d.xid,
            ))
            if n % STEP == 0:
                yield

    def _physical(self, parent: str, util: float, hot: bool, t: float) -> tuple[float, float]:
        """(temperature °C, power W) of one physical GPU."""
        p = self._parent_params[parent]
        model = self._parent_model[parent]
        n = p.noise(t)
        load = min(max(util, 0.0), 100.0) / 100
        if hot:  # a failing fan or a blocked airflow: hot even for this load
            return float(round(HOT_TEMP_C + 1.2 * n)), round(model.tdp_w * (0.96 + 0.02 * n), 3)
        temp = p.ambient_c + (model.busy_temp_c - p.ambient_c) * load**0.8 + 0.8 * n
        power = model.idle_w * (0.97 + 0.03 * p.level) + (model.tdp_w - model.idle_w) * load * p.efficiency
        return float(round(temp)), round(max(power + 1.5 * n, 1.0), 3)


T = TypeVar("T")


def _run(steps: Generator[None, None, T]) -> T:
    """All the steps at once; what the generator returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
