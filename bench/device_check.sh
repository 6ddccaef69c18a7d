#!/usr/bin/env bash
# The NVML path on a real GPU machine, in one go (the device tool's machine; see NOTES).
#
#   bench/device_check.sh OUT_DIR
#
# Idle probe, then a matmul load (PyTorch, when the machine has it) with a probe,
# `gpuctl snapshot --local` (text and JSON) and a headless `gpuctl top --local`
# during it, then a probe after. Everything lands in OUT_DIR. Changes no GPU
# setting (MIG mode, clocks, persistence): it only reads.
set -u
out=${1:?usage: bench/device_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1

step() { echo "== $*"; }

step "machine"
{ uname -a; nvidia-smi; nvidia-smi --query-gpu=name,uuid,driver_version,mig.mode.current,power.limit,memory.total --format=csv; } \
    >"$out/nvidia-smi.txt" 2>&1
head -25 "$out/nvidia-smi.txt"

step "probe, idle"
$py bench/nvml_probe.py --json >"$out/probe_idle.json" 2>"$out/probe_idle.err"; echo "rc=$?"
$py bench/nvml_probe.py | head -5

step "NVML read cost"
$py - <<'EOF' 2>&1 | tee "$out/read_cost.txt"
import asyncio, statistics, time
from gpuctl.sources.nvml import NvmlSource

async def main():
    source = NvmlSource()
    await source.open()
    times = []
    for _ in range(50):
        t = time.perf_counter(); await source.fetch(); times.append((time.perf_counter() - t) * 1000)
    await source.close()
    print(f"50 reads: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
asyncio.run(main())
EOF

step "load"
$py - >"$out/load.txt" 2>&1 <<'EOF' &
import time
try:
    import torch
except ImportError:
    print("no torch: no load"); raise SystemExit(0)
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
hold = torch.empty(20 * 1024**3, dtype=torch.uint8, device="cuda")  # 20 GiB held, to see memory move
end = time.time() + 45
n = 0
while time.time() < end:
    y = x @ x
    n += 1
    if n % 50 == 0:
        torch.cuda.synchronize()
print(f"{n} matmuls, held {hold.numel() / 1024**3:.0f} GiB")
EOF
load=$!
sleep 12

step "probe, under load"
$py bench/nvml_probe.py --json >"$out/probe_load.json" 2>"$out/probe_load.err"; echo "rc=$?"
$py bench/nvml_probe.py | head -5

step "gpuctl snapshot --local"
timeout 60 $py -m gpuctl snapshot --local >"$out/snapshot_local.txt" 2>&1; echo "rc=$?"
cat "$out/snapshot_local.txt" | head -30
timeout 60 $py -m gpuctl snapshot --local --json >"$out/snapshot_local.json" 2>"$out/snapshot_local_json.err"; echo "rc=$?"

step "gpuctl top --local, headless"
timeout 90 $py bench/nvml_top_check.py "$out" --timeout 30; echo "rc=$?"

wait $load
cat "$out/load.txt"

step "probe, after"
sleep 3
$py bench/nvml_probe.py --json >"$out/probe_after.json" 2>"$out/probe_after.err"; echo "rc=$?"
$py bench/nvml_probe.py | head -5
