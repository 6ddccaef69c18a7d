"""Print what a real NVIDIA device reports through NVML, raw and as gpuctl samples.

Run on a GPU machine to confirm the calls gpuctl.sources.nvml makes (and the
units it assumes) against a real driver:

    python bench/nvml_probe.py            # human-readable
    python bench/nvml_probe.py --json     # one JSON document, for keeping

Exits 2 with gpuctl's message when there is no driver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pynvml

from gpuctl.errors import MetricsUnavailable
from gpuctl.sources.nvml import NvmlSource


def attempt(call: Callable[[], Any]) -> Any:
    try:
        value = call()
    except pynvml.NVMLError as e:
        return f"<{type(e).__name__}: {e}>"
    return value.decode() if isinstance(value, bytes) else value


def raw_device(index: int) -> dict[str, Any]:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    mem = attempt(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
    mem2 = attempt(lambda: pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2))
    util = attempt(lambda: pynvml.nvmlDeviceGetUtilizationRates(h))
    out: dict[str, Any] = {
        "index": index,
        "name": attempt(lambda: pynvml.nvmlDeviceGetName(h)),
        "uuid": attempt(lambda: pynvml.nvmlDeviceGetUUID(h)),
        "util_gpu_pct": getattr(util, "gpu", util),
        "util_memory_pct": getattr(util, "memory", util),
        "mem_bytes": {"used": mem.used, "free": mem.free, "total": mem.total} if hasattr(mem, "used") else mem,
        "mem_v2_bytes": {"used": mem2.used, "free": mem2.free, "reserved": mem2.reserved, "total": mem2.total}
        if hasattr(mem2, "reserved")
        else mem2,
        "temp_c": attempt(lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
        "power_mw": attempt(lambda: pynvml.nvmlDeviceGetPowerUsage(h)),
        "mig_mode": attempt(lambda: pynvml.nvmlDeviceGetMigMode(h)),
        "processes": [
            {"pid": p.pid, "used_gpu_memory_bytes": p.usedGpuMemory}
            for p in (attempt(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h)) or [])
            if hasattr(p, "pid")
        ],
    }
    if isinstance(out["mig_mode"], list) and out["mig_mode"][0] == pynvml.NVML_DEVICE_MIG_ENABLE:
        out["mig_devices"] = []
        for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                m = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
            except pynvml.NVMLError_NotFound:
                continue
            mm = attempt(lambda: pynvml.nvmlDeviceGetMemoryInfo(m))
            out["mig_devices"].append(
                {
                    "slot": slot,
                    "name": attempt(lambda: pynvml.nvmlDeviceGetName(m)),
                    "uuid": attempt(lambda: pynvml.nvmlDeviceGetUUID(m)),
                    "gpu_instance_id": attempt(lambda: pynvml.nvmlDeviceGetGpuInstanceId(m)),
                    "util": str(attempt(lambda: pynvml.nvmlDeviceGetUtilizationRates(m))),
                    "mem_bytes": {"used": mm.used, "free": mm.free} if hasattr(mm, "used") else mm,
                }
            )
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    source = NvmlSource()
    try:
        await source.open()
    except MetricsUnavailable as e:
        print(f"gpuctl: {e}", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        batch = await source.fetch()
        read_ms = (time.perf_counter() - started) * 1000
        report = {
            "driver": attempt(pynvml.nvmlSystemGetDriverVersion),
            "nvml": attempt(pynvml.nvmlSystemGetNVMLVersion),
            "devices": [raw_device(i) for i in range(pynvml.nvmlDeviceGetCount())],
            "gpuctl_samples": [asdict(s) | {"key": s.key} for s in batch.samples],
            "gpuctl_rejected": batch.rejected,
            "gpuctl_read_ms": round(read_ms, 2),
        }
    finally:
        await source.close()

    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"driver {report['driver']}, NVML {report['nvml']}, one read took {report['gpuctl_read_ms']} ms")
        for device in report["devices"]:
            print(json.dumps(device, default=str))
        for sample in report["gpuctl_samples"]:
            print("sample", json.dumps(sample, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
