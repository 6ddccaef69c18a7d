"""NvmlSource: the no-driver path for real, sample conversion through the `nvml` seam.

This machine has no NVIDIA GPU or driver, so the real pynvml fails at nvmlInit
(NVMLError_LibraryNotFound): that path is tested for real. Converting device
readings into samples needs devices, so those tests hand NvmlSource a fake
NVML object. The fake exists ONLY because no GPU is available here; it uses
pynvml's real error classes and constants, and bench/nvml_probe.py checks the
real calls on a GPU machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from gpuctl.errors import MetricsUnavailable
from gpuctl.sources.nvml import MIB, NvmlSource, mig_profile_from_name
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll


def nvml_error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # pynvml maps the code to its subclass, e.g. NVMLError_NotFound


@dataclass
class FakeDevice:
    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str = "GPU-0000"
    util: int | None = 37
    used_mib: float = 1000  # by processes: NVML v2's `used`
    free_mib: float = 79000
    reserved_mib: float = 0  # the driver's own: v1 counts it as used
    temp: int = 61
    power_mw: int | None = 312_500
    mig: bool | None = False  # None: MIG not supported at all
    mig_slots: dict[int, FakeDevice] = field(default_factory=dict)  # slot -> MIG device
    gpu_instance_id: int | None = None
    lost: bool = False


class FakeNvml:
    """The subset of pynvml that NvmlSource calls, over FakeDevices (see module docstring)."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    nvmlMemory_v2 = pynvml.nvmlMemory_v2
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    MAX_MIG_SLOTS = 7

    def __init__(self, devices: list[FakeDevice], *, memory_v2: bool = True) -> None:
        self.devices = devices
        self.memory_v2 = memory_v2  # False: a driver before 510, without nvmlDeviceGetMemoryInfo_v2
        self.initialised = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        device = self.devices[index]
        if device.lost:
            raise nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return device

    def nvmlDeviceGetName(self, d: FakeDevice) -> str:
        return d.name

    def nvmlDeviceGetUUID(self, d: FakeDevice) -> str:
        return d.uuid

    def nvmlDeviceGetUtilizationRates(self, d: FakeDevice) -> Any:
        if d.util is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(gpu=d.util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, d: FakeDevice, version: int | None = None) -> Any:
        used, free, reserved = int(d.used_mib * MIB), int(d.free_mib * MIB), int(d.reserved_mib * MIB)
        if version is None:
            return SimpleNamespace(used=used + reserved, free=free, total=used + free + reserved)
        assert version == pynvml.nvmlMemory_v2
        if not self.memory_v2:
            raise nvml_error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return SimpleNamespace(version=version, used=used, free=free, reserved=reserved, total=used + free + reserved)

    def nvmlDeviceGetTemperature(self, d: FakeDevice, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return d.temp

    def nvmlDeviceGetPowerUsage(self, d: FakeDevice) -> int:
        if d.power_mw is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return d.power_mw

    def nvmlDeviceGetMigMode(self, d: FakeDevice) -> list[int]:
        if d.mig is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if d.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, d: FakeDevice) -> int:
        return self.MAX_MIG_SLOTS

    def nvmlDeviceGetMigDeviceHandleByIndex(self, d: FakeDevice, slot: int) -> FakeDevice:
        if slot not in d.mig_slots:
            raise nvml_error(pynvml.NVML_ERROR_NOT_FOUND)
        return d.mig_slots[slot]

    def nvmlDeviceGetGpuInstanceId(self, d: FakeDevice) -> int:
        assert d.gpu_instance_id is not None
        return d.gpu_instance_id


def mig_device(gi: int, profile: str, used_mib: float) -> FakeDevice:
    return FakeDevice(name=f"NVIDIA A100-SXM4-80GB MIG {profile}", uuid=f"MIG-{gi}", util=None, used_mib=used_mib, free_mib=9000, gpu_instance_id=gi)


# -- the real library, no driver ------------------------------------------------------------


async def test_no_driver_is_a_clear_gpuctl_error() -> None:
    source = NvmlSource(hostname="box")  # the real pynvml module
    with pytest.raises(MetricsUnavailable, match=r"^NVIDIA driver/NVML not found: NVML Shared Library Not Found") as info:
        await source.open()
    assert isinstance(info.value.__cause__, pynvml.NVMLError_LibraryNotFound)


async def test_connect_fails_fast_without_a_driver() -> None:
    with pytest.raises(MetricsUnavailable, match="NVIDIA driver/NVML not found"):
        await NvmlSource(hostname="box").connect()


async def test_no_driver_is_recorded_in_the_store_and_the_source_keeps_running() -> None:
    store = ClusterStore()
    task = asyncio.create_task(NvmlSource(hostname="box", refresh_s=0.05, max_backoff_s=0.1).run(store))
    try:
        snap = await poll(store.snapshot, lambda s: s.metrics.error is not None, timeout_s=10, interval_s=0.02,
                          what="the failed refresh in the store")
        assert snap.metrics.source == "nvml" and snap.metrics.stale
        assert (snap.metrics.error or "").startswith("NVIDIA driver/NVML not found")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- conversion, through the seam -------------------------------------------------------------


def test_whole_gpu_sample_units() -> None:
    (sample,) = NvmlSource(nvml=FakeNvml([FakeDevice()]), hostname="box").read().samples
    assert (sample.key, sample.model, sample.uuid) == ("box/0", "NVIDIA A100-SXM4-80GB", "GPU-0000")
    assert (sample.util_pct, sample.mem_used_mib, sample.mem_free_mib) == (37.0, 1000.0, 79000.0)
    assert (sample.temp_c, sample.power_w) == (61.0, 312.5)  # mW -> W
    assert sample.pod is None and sample.mig_instance is None


def test_mig_gpu_reports_its_instances_and_skips_empty_slots() -> None:
    parent = FakeDevice(mig=True, temp=70, mig_slots={0: mig_device(9, "1g.10gb", 512), 3: mig_device(3, "3g.40gb", 2048)})
    batch = NvmlSource(nvml=FakeNvml([FakeDevice(uuid="GPU-a"), parent]), hostname="box").read()
    by_key = {s.key: s for s in batch.samples}
    assert set(by_key) == {"box/0", "box/1/mig9", "box/1/mig3"}
    mig = by_key["box/1/mig9"]
    assert (mig.mig_profile, mig.mig_instance, mig.uuid, mig.mem_used_mib) == ("1g.10gb", 9, "MIG-9", 512.0)
    assert mig.util_pct is None  # NVML has no utilisation for MIG devices
    assert mig.temp_c == 70.0 and mig.power_w is None
    assert batch.rejected == 0


def test_memory_used_leaves_out_the_drivers_reserve_as_dcgm_does() -> None:
    """An idle H200 (driver 580): NVML v1 says 615 MiB used, v2 says 0 used + 615 reserved, as nvidia-smi and
    dcgm-exporter's FB_USED (DCGM reads v2 from driver 510 on). The sample follows DCGM."""
    h200 = FakeDevice(name="NVIDIA H200", used_mib=0, reserved_mib=615.0625, free_mib=143155.9375)
    (sample,) = NvmlSource(nvml=FakeNvml([h200]), hostname="box").read().samples
    assert (sample.mem_used_mib, sample.mem_free_mib) == (0.0, 143155.9375)


def test_a_driver_without_memory_v2_falls_back_to_v1_and_stops_asking() -> None:
    nvml = FakeNvml([FakeDevice(used_mib=1000, reserved_mib=500), FakeDevice()], memory_v2=False)
    source = NvmlSource(nvml=nvml, hostname="box")
    first, second = source.read().samples
    assert (first.mem_used_mib, first.mem_free_mib) == (1500.0, 79000.0)  # v1: reserved counts as used
    assert second.mem_used_mib == 1000.0 and source.read().rejected == 0


def test_unsupported_fields_are_none_not_errors() -> None:
    (sample,) = NvmlSource(nvml=FakeNvml([FakeDevice(mig=None, power_mw=None, util=None)]), hostname="box").read().samples
    assert (sample.util_pct, sample.power_w, sample.temp_c) == (None, None, 61.0)


def test_a_lost_gpu_is_counted_and_the_rest_still_read() -> None:
    batch = NvmlSource(nvml=FakeNvml([FakeDevice(lost=True), FakeDevice(uuid="GPU-1")]), hostname="box").read()
    assert [s.key for s in batch.samples] == ["box/1"]
    assert batch.rejected == 1


def test_hostname_defaults_to_node_name_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "gpu-node-17")
    assert NvmlSource(nvml=FakeNvml([])).hostname == "gpu-node-17"


@pytest.mark.parametrize(
    ("name", "profile"),
    [("NVIDIA A100-SXM4-80GB MIG 1g.10gb", "1g.10gb"), ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "1g.10gb+me"), ("NVIDIA A100-SXM4-80GB", None)],
)
def test_mig_profile_from_device_name(name: str, profile: str | None) -> None:
    assert mig_profile_from_name(name) == profile


async def test_run_feeds_the_store_and_shuts_nvml_down_when_cancelled() -> None:
    fake = FakeNvml([FakeDevice(), FakeDevice(uuid="GPU-1", util=90)])
    store = ClusterStore()
    task = asyncio.create_task(NvmlSource(nvml=fake, hostname="box", refresh_s=0.05).run(store))
    try:
        snap = await poll(store.snapshot, lambda s: len(s.gpus) == 2, timeout_s=10, interval_s=0.02, what="both GPUs in the store")
        assert snap.metrics.source == "nvml" and not snap.metrics.stale
        assert {g.key: g.util_pct for g in snap.gpus} == {"box/0": 37.0, "box/1": 90.0}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fake.initialised == 1 and fake.shutdowns == 1
