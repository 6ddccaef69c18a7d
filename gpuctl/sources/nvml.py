"""GPU metrics for this one machine, read straight from the driver with NVML.

Used by `gpuctl top --local` on a GPU box without Prometheus. NVML knows
nothing about Kubernetes, so samples carry no pod and nothing is ever "idle
while held"; the hostname is the Kubernetes node name (NODE_NAME, as a
DaemonSet would set it) or this machine's host name.

Memory is NVML's v2 memory info where the driver has it (510 and later), as
DCGM reads it for dcgm-exporter's FB_USED and FB_FREE: `used` leaves out the
memory the driver reserves for itself (about 615 MiB on an idle H200, which
nvidia-smi also shows as 0 MiB used). Older drivers give v1, reserved included.

MIG: a GPU in MIG mode is reported as its MIG instances only, keyed by GPU
instance id, like dcgm-exporter does. NVML reports no utilisation for MIG
devices, so theirs is None.

`nvml` is a seam: pass any object with pynvml's functions and error classes.
Production uses the `pynvml` module from nvidia-ml-py. NVML calls block, so
they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from types import ModuleType
from typing import Any, Protocol, TypeVar

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import MetricsUnavailable
from gpuctl.sources.base import Backoff
from gpuctl.state.records import GpuSample, MetricsBatch

log = logging.getLogger(__name__)

MIB = 1024 * 1024
T = TypeVar("T")


class MetricsSink(Protocol):
    def set_metrics_source(self, name: str) -> None: ...
    def apply_metrics(self, batch: MetricsBatch) -> None: ...
    def metrics_failed(self, error: str, at: datetime, *, retry_at: datetime | None = None) -> None: ...


def node_name() -> str:
    return os.environ.get("NODE_NAME") or socket.gethostname()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def mig_profile_from_name(name: str) -> str | None:
    """'NVIDIA A100-SXM4-80GB MIG 1g.10gb' -> '1g.10gb' (NVML names MIG devices this way)."""
    _, sep, tail = name.rpartition(" MIG ")
    if not sep:
        return None
    return tail.strip() or None


class NvmlSource:
    name = "nvml"

    def __init__(
        self,
        *,
        nvml: ModuleType | Any | None = None,
        hostname: str | None = None,
        refresh_s: float = 2.0,
        max_backoff_s: float = 60.0,
        now: Clock = utcnow,
    ) -> None:
        self._nvml = nvml if nvml is not None else importlib.import_module("pynvml")
        self.hostname = hostname or node_name()
        self.refresh_s = refresh_s
        self.max_backoff_s = max_backoff_s
        self._now = now
        self._open = False
        self._memory_v2 = True  # until the driver says it has no nvmlDeviceGetMemoryInfo_v2

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Initialise NVML; raises MetricsUnavailable when there is no driver."""
        if not self._open:
            await asyncio.to_thread(self._init)
            self._open = True

    async def connect(self) -> None:
        """Fail fast before anything starts (service.open_cluster calls this): no driver -> MetricsUnavailable."""
        await self.open()

    async def close(self) -> None:
        if self._open:
            self._open = False
            try:
                await asyncio.to_thread(self._nvml.nvmlShutdown)
            except self._nvml.NVMLError as e:
                log.debug("nvmlShutdown failed: %s", e)

    def _init(self) -> None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except (nvml.NVMLError_LibraryNotFound, nvml.NVMLError_DriverNotLoaded) as e:
            raise MetricsUnavailable(
                f"NVIDIA driver/NVML not found: {e}",
                hint="run --local on a machine with an NVIDIA GPU and driver, or read metrics from Prometheus",
            ) from e
        except nvml.NVMLError as e:
            raise MetricsUnavailable(f"NVML failed to initialise: {e}") from e

    # -- reading ---------------------------------------------------------------------

    async def fetch(self) -> MetricsBatch:
        await self.open()
        return await asyncio.to_thread(self.read)

    def read(self) -> MetricsBatch:
        """One pass over every device (blocking). Raises MetricsUnavailable if NVML stops answering."""
        nvml = self._nvml
        at = self._now()  # NVML reads the driver now, on this machine: read time is measurement time
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as e:
            raise MetricsUnavailable(f"NVML stopped answering: {e}") from e
        samples: list[GpuSample] = []
        unreadable = 0
        for index in range(count):
            try:
                samples.extend(self._device(index))
            except nvml.NVMLError as e:  # GPU lost, fallen off the bus, ...
                log.warning("GPU %d unreadable: %s", index, e)
                unreadable += 1
        return MetricsBatch(at=at, samples=tuple(samples), rejected=unreadable)

    def _device(self, index: int) -> list[GpuSample]:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        model = self._optional(lambda: _text(nvml.nvmlDeviceGetName(handle)))
        uuid = self._optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
        temp = self._optional(lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        if self._mig_enabled(handle):
            return self._mig_instances(index, handle, model, temp)
        used, free = self._memory(handle)
        return [
            GpuSample(
                hostname=self.hostname,
                index=index,
                uuid=uuid,
                model=model,
                util_pct=self._optional(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
                mem_used_mib=used,
                mem_free_mib=free,
                temp_c=temp,
                power_w=self._optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),  # mW -> W
            )
        ]

    def _mig_enabled(self, handle: Any) -> bool:
        nvml = self._nvml
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:  # NotSupported on GPUs without MIG
            return False
        return bool(current == nvml.NVML_DEVICE_MIG_ENABLE)

    def _mig_instances(self, index: int, parent: Any, model: str | None, temp: float | None) -> list[GpuSample]:
        nvml = self._nvml
        out: list[GpuSample] = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(parent)):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
            except nvml.NVMLError_NotFound:
                continue  # empty slot
            used, free = self._memory(handle)
            name = self._optional(lambda: _text(nvml.nvmlDeviceGetName(handle)))
            out.append(
                GpuSample(
                    hostname=self.hostname,
                    index=index,
                    uuid=self._optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
                    model=model,
                    mig_profile=mig_profile_from_name(name) if name else None,
                    mig_instance=int(nvml.nvmlDeviceGetGpuInstanceId(handle)),
                    util_pct=self._optional(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
                    mem_used_mib=used,
                    mem_free_mib=free,
                    temp_c=temp,  # one die: the instance is as hot as its GPU
                    power_w=None,  # board power is not per instance; summing it per instance would lie
                )
            )
        return out

    def _memory(self, handle: Any) -> tuple[float | None, float | None]:
        info = self._optional(lambda: self._memory_info(handle))
        if info is None:
            return None, None
        return info.used / MIB, info.free / MIB

    def _memory_info(self, handle: Any) -> Any:
        nvml = self._nvml
        if self._memory_v2:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
            except nvml.NVMLError_FunctionNotFound:  # a driver before 510
                self._memory_v2 = False
        return nvml.nvmlDeviceGetMemoryInfo(handle)

    def _optional(self, read: Callable[[], T]) -> T | None:
        """One field: None when this GPU or driver cannot report it."""
        try:
            return read()
        except (self._nvml.NVMLError_NotSupported, self._nvml.NVMLError_NoPermission):
            return None

    # -- the source loop ---------------------------------------------------------------

    async def run(self, store: MetricsSink) -> None:
        """Feed the store until cancelled; a missing driver is recorded and retried, not raised."""
        store.set_metrics_source(self.name)
        backoff = Backoff(base=self.refresh_s, cap=self.max_backoff_s)
        try:
            while True:
                try:
                    batch = await self.fetch()
                except MetricsUnavailable as e:
                    store.metrics_failed(str(e), self._now())
                    await self.close()  # re-initialise next time: the driver may have been reloaded
                    await asyncio.sleep(backoff.next())
                    continue
                backoff.reset()
                store.apply_metrics(batch)
                await asyncio.sleep(self.refresh_s)
        finally:
            await self.close()
