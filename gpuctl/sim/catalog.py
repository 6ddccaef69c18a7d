"""The hardware the simulated fleet is made of: GPU models, MIG layouts, node pools.

Numbers are what the real parts report (nvidia-smi / GFD / DCGM), rounded
where NVIDIA publishes no exact figure, so the demo and the test bed look
like a real cluster. MIG instance ids (GPU_I_ID) follow the placements
nvidia-smi shows for each mig-parted config on a real GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl.migparted import MIG_MODELS
from gpuctl.model import Taint

# The node label that names a node's pool. Karpenter's label: what an EKS
# cluster has; GKE clusters use cloud.google.com/gke-nodepool instead.
POOL_LABEL = "karpenter.sh/nodepool"
GPU_TAINT = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")


@dataclass(frozen=True, slots=True)
class GpuModel:
    name: str  # DCGM modelName / nvidia-smi name, with spaces
    family: str  # nvidia.com/gpu.family
    mem_mib: int  # nvidia.com/gpu.memory and DCGM FB total
    compute: tuple[int, int]  # CUDA compute capability
    tdp_w: float
    idle_w: float
    max_sm_mhz: int
    mem_mhz: int
    busy_temp_c: float  # steady temperature at full load in a healthy chassis
    hbm: bool  # HBM parts report a memory temperature above the core's

    @property
    def product_label(self) -> str:
        """nvidia.com/gpu.product: GFD replaces spaces with dashes."""
        return self.name.replace(" ", "-")


A100_80GB = GpuModel("NVIDIA A100-SXM4-80GB", "ampere", 81920, (8, 0), 400.0, 62.0, 1410, 1593, 68.0, True)
H100_80GB = GpuModel("NVIDIA H100 80GB HBM3", "hopper", 81559, (9, 0), 700.0, 72.0, 1980, 2619, 71.0, True)
L4 = GpuModel("NVIDIA L4", "ada-lovelace", 23034, (8, 9), 72.0, 16.0, 2040, 6251, 74.0, False)
T4 = GpuModel("Tesla T4", "turing", 15360, (7, 5), 70.0, 10.0, 1590, 5001, 76.0, False)


# MIG profiles (compute slices, memory) from the one table gpuctl has of them.
H100_PROFILES = MIG_MODELS["NVIDIA-H100-80GB-HBM3"].profiles

# mig-parted config name -> (profile, GPU_I_ID) per GPU, in the order nvidia-smi lists them.
H100_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "all-balanced": (("3g.40gb", 2), ("2g.20gb", 3), ("1g.10gb", 9), ("1g.10gb", 10)),
    "all-3g.40gb": (("3g.40gb", 1), ("3g.40gb", 2)),
    "all-1g.10gb": tuple(("1g.10gb", i) for i in range(7, 14)),
    "all-7g.80gb": (("7g.80gb", 0),),
}


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str
    model: GpuModel
    gpus_per_node: int
    nodes: int  # at scale=1
    instance_type: str
    driver: str
    pci_bus_ids: tuple[str, ...]
    taints: tuple[Taint, ...] = ()
    mig_capable: bool = False
    # mig-parted configs applied to successive nodes (cycled); () = MIG off.
    mig_layouts: tuple[str, ...] = ()


POOLS: tuple[PoolSpec, ...] = (
    PoolSpec(
        "a100-train", A100_80GB, 8, 4, "p4de.24xlarge", "550.54.15",
        ("00000000:10:1C.0", "00000000:10:1D.0", "00000000:20:1C.0", "00000000:20:1D.0",
         "00000000:90:1C.0", "00000000:90:1D.0", "00000000:A0:1C.0", "00000000:A0:1D.0"),
        taints=(GPU_TAINT,), mig_capable=True,
    ),
    PoolSpec(
        "h100-mig", H100_80GB, 8, 2, "p5.48xlarge", "550.90.07",
        ("00000000:53:00.0", "00000000:64:00.0", "00000000:75:00.0", "00000000:86:00.0",
         "00000000:97:00.0", "00000000:A8:00.0", "00000000:B9:00.0", "00000000:CA:00.0"),
        taints=(GPU_TAINT,), mig_capable=True, mig_layouts=("all-balanced", "all-3g.40gb"),
    ),
    PoolSpec(
        "l4-infer", L4, 4, 3, "g6.12xlarge", "550.90.07",
        ("00000000:38:00.0", "00000000:3A:00.0", "00000000:3C:00.0", "00000000:3E:00.0"),
    ),
    PoolSpec(
        "t4-batch", T4, 4, 2, "g4dn.12xlarge", "535.183.01",
        ("00000000:00:1B.0", "00000000:00:1C.0", "00000000:00:1D.0", "00000000:00:1E.0"),
    ),
)
POOLS_BY_NAME = {p.name: p for p in POOLS}
MODELS_BY_NAME = {m.name: m for m in (A100_80GB, H100_80GB, L4, T4)}
