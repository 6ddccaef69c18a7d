"""mig-parted configurations (the input of NVIDIA's MIG manager) and what
applying one does to a node's GPUs and to the resources it advertises.

The MIG manager reads a `config.yaml` of named configs (ConfigMap
`<node>-mig-config`, else `default-mig-parted-config`, in the GPU operator's
namespace); a node selects one with the label `nvidia.com/mig.config`. This
module

- parses that file the way NVIDIA/mig-parted api/spec/v1 does (`version: v1`,
  unknown fields rejected, every config a non-empty list, `devices` is `all` or
  GPU indices, profile names checked for format, counts not all zero);
- knows the MIG profiles each GPU model offers (`MIG_MODELS`, keyed by the
  `nvidia.com/gpu.product` label GPU feature discovery sets);
- computes the per-GPU layout a named config produces on a node (`apply_config`),
  or says exactly why it cannot be applied there;
- computes the extended resources the device plugin advertises for a layout
  under a MIG strategy (`advertised_resources`).

Used by the relabel-mig playbook's pre-checks and verification and by the test
bed's MIG manager simulator. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, StrictBool, ValidationError, field_validator

from gpuctl.errors import MigConfigInvalid

MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STATE_LABEL = "nvidia.com/mig.config.state"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
DEFAULT_CONFIG_MAP = "default-mig-parted-config"
CONFIG_KEY = "config.yaml"

MigState = Literal["pending", "rebooting", "success", "failed"]
MigStrategy = Literal["none", "single", "mixed"]

# mig-parted's profile format: [<c>c.]<g>g.<mem>gb[+attr[.attr]][-attr], e.g.
# "1g.10gb", "1c.3g.40gb", "1g.5gb+me", "1g.24gb+me.all", "1g.24gb-me".
_PROFILE_FORMAT = re.compile(r"^(\d+c\.)?\d+g\.\d+gb([+-][a-z]+(\.[a-z]+)*)*$")


def node_config_map(node: str) -> str:
    """The per-node ConfigMap mig-manager ≥ v0.14 writes (and reads first)."""
    return f"{node}-mig-config"


# -- the config file -------------------------------------------------------------


class MigConfigEntry(BaseModel):
    """One item of a named config: which GPUs, MIG on or off, and the instances."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    device_filter: tuple[str, ...] | None = Field(default=None, alias="device-filter")
    devices: Literal["all"] | tuple[NonNegativeInt, ...]
    mig_enabled: StrictBool = Field(alias="mig-enabled")
    mig_devices: dict[str, NonNegativeInt] = Field(default_factory=dict, alias="mig-devices")

    @field_validator("device_filter", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("mig_devices")
    @classmethod
    def _profiles_well_formed(cls, value: dict[str, int]) -> dict[str, int]:
        for profile in value:
            if not _PROFILE_FORMAT.match(profile):
                raise ValueError(f"{profile!r} is not a MIG profile name (like '1g.10gb')")
        if value and not any(value.values()):
            raise ValueError("all counts for all MIG profiles are 0")
        return value

    def applies_to(self, index: int, device_id: str) -> bool:
        """Whether this entry configures GPU `index` of PCI id `device_id` (mig-parted's matching)."""
        if self.device_filter is not None and device_id.lower() not in {f.lower() for f in self.device_filter}:
            return False
        return self.devices == "all" or index in self.devices


class MigPartedConfig(BaseModel):
    """The whole `config.yaml`: named configs (`mig-configs`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    version: Literal["v1"]
    mig_configs: dict[str, Annotated[tuple[MigConfigEntry, ...], Field(min_length=1)]] = Field(alias="mig-configs", min_length=1)

    @classmethod
    def parse(cls, text: str, *, source: str) -> MigPartedConfig:
        """Parse a config.yaml; `source` names where it came from in the error."""
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MigConfigInvalid(f"{source}: not YAML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise MigConfigInvalid(f"{source}: {where}: {first['msg']}{more}") from exc

    def select(self, name: str, *, source: str) -> tuple[MigConfigEntry, ...]:
        """The named config, or MigConfigInvalid listing the names that exist."""
        try:
            return self.mig_configs[name]
        except KeyError:
            known = ", ".join(sorted(self.mig_configs))
            raise MigConfigInvalid(f"MIG config {name!r} is not in {source}", hint=f"it has: {known}") from None


# -- GPU models -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigProfile:
    """A GPU instance profile on one GPU model.

    `slices` are compute slices (of 7), `memory_slices` memory slices (of 8);
    `max_count` is how many instances of this profile alone fit one GPU
    (NVIDIA's MIG user guide, "Supported MIG Profiles"). `mem_mib` is the
    memory GFD reports for such a device — close to, not exactly, the figure
    on a real GPU."""

    name: str
    slices: int
    memory_slices: int
    max_count: int
    mem_mib: int

    @property
    def resource(self) -> str:
        """The extended resource under the mixed strategy."""
        return f"{MIG_RESOURCE_PREFIX}{self.name}"


@dataclass(frozen=True, slots=True)
class MigGpuModel:
    """A MIG-capable GPU model: its GFD product label, PCI device ids
    (`0x<device><vendor>` as mig-parted's device-filter writes them), memory,
    profiles, and the layout NVIDIA's default config calls `all-balanced`."""

    product: str
    device_ids: tuple[str, ...]
    mem_mib: int
    profiles: Mapping[str, MigProfile]
    balanced: Mapping[str, int] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return self.device_ids[0]


def _profiles(*rows: tuple[str, int, int, int]) -> dict[str, MigProfile]:
    return {name: MigProfile(name, int(name.split("g.")[0]), mem, count, mib) for name, mem, count, mib in rows}


_A100_80GB_H100_PROFILES = (
    # name, memory slices, max per GPU, MiB
    ("1g.10gb", 1, 7, 9856),
    ("1g.20gb", 2, 4, 19968),
    ("2g.20gb", 2, 3, 19968),
    ("3g.40gb", 4, 2, 40320),
    ("4g.40gb", 4, 1, 40320),
    ("7g.80gb", 8, 1, 80896),
)
_BALANCED_80GB = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}

# Device ids and the balanced layouts are those of NVIDIA/gpu-operator
# assets/state-mig-manager/0400_configmap.yaml.
MIG_MODELS: dict[str, MigGpuModel] = {
    m.product: m
    for m in (
        MigGpuModel(
            "NVIDIA-A100-SXM4-40GB",
            ("0x20B010DE", "0x20B110DE"),
            40960,
            _profiles(
                ("1g.5gb", 1, 7, 4864),
                ("1g.10gb", 2, 4, 9856),
                ("2g.10gb", 2, 3, 9856),
                ("3g.20gb", 4, 2, 19968),
                ("4g.20gb", 4, 1, 19968),
                ("7g.40gb", 8, 1, 40192),
            ),
            {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
        ),
        MigGpuModel(
            "NVIDIA-A100-SXM4-80GB", ("0x20B210DE", "0x20B510DE"), 81920, _profiles(*_A100_80GB_H100_PROFILES), _BALANCED_80GB
        ),
        MigGpuModel(
            "NVIDIA-H100-80GB-HBM3", ("0x233010DE", "0x233110DE"), 81559, _profiles(*_A100_80GB_H100_PROFILES), _BALANCED_80GB
        ),
        MigGpuModel(
            "NVIDIA-H200",
            ("0x233510DE",),
            143771,
            _profiles(
                ("1g.18gb", 1, 7, 16384),
                ("1g.35gb", 2, 4, 32768),
                ("2g.35gb", 2, 3, 32768),
                ("3g.71gb", 4, 2, 65536),
                ("4g.71gb", 4, 1, 65536),
                ("7g.141gb", 8, 1, 130560),
            ),
            {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1},
        ),
    )
}


def gpu_model(product_label: str) -> MigGpuModel | None:
    """The MIG model behind a `nvidia.com/gpu.product` value, also when the
    single strategy renamed it (`...-MIG-1g.10gb`); None when not MIG-capable
    or unknown here."""
    return MIG_MODELS.get(product_label.split("-MIG-", 1)[0].removesuffix("-SHARED"))


# -- applying a config ------------------------------------------------------------

# What one GPU looks like: None = MIG disabled, else its instances by profile
# (an empty mapping: MIG enabled, no instances).
GpuLayout = Mapping[str, int] | None


def check_fits(devices: Mapping[str, int], model: MigGpuModel, *, gpu: int) -> None:
    """Raise MigConfigInvalid unless `devices` can be created together on one GPU
    of `model`. Placement is approximated by slice sums (compute ≤ 7,
    memory ≤ 8) and each profile's own maximum."""
    wanted = {name: count for name, count in devices.items() if count}
    for name, count in wanted.items():
        profile = model.profiles.get(name)
        if profile is None:
            valid = ", ".join(model.profiles)
            raise MigConfigInvalid(f"GPU {gpu}: MIG profile {name} does not exist on {model.product}", hint=f"valid: {valid}")
        if count > profile.max_count:
            raise MigConfigInvalid(f"GPU {gpu}: {count}× {name} on {model.product}; at most {profile.max_count} fit")
    compute = sum(model.profiles[n].slices * c for n, c in wanted.items())
    memory = sum(model.profiles[n].memory_slices * c for n, c in wanted.items())
    if compute > 7 or memory > 8:
        layout = " + ".join(f"{c}× {n}" for n, c in wanted.items())
        raise MigConfigInvalid(f"GPU {gpu}: {layout} needs {compute}/7 compute and {memory}/8 memory slices on {model.product}")


def apply_config(entries: Sequence[MigConfigEntry], model: MigGpuModel, current: Sequence[GpuLayout]) -> tuple[GpuLayout, ...]:
    """The layout after applying a named config to GPUs now laid out as `current`.

    Entries apply in order to the GPUs they match (device filter, indices), as
    mig-parted walks them; a GPU no entry matches keeps its layout. Raises
    MigConfigInvalid naming the GPU and profile that cannot be created."""
    layout: list[GpuLayout] = list(current)
    for entry in entries:
        for index in range(len(layout)):
            if not entry.applies_to(index, model.device_id):
                continue
            if not entry.mig_enabled:
                if any(entry.mig_devices.values()):
                    raise MigConfigInvalid(f"GPU {index}: MIG devices requested with mig-enabled: false")
                layout[index] = None
                continue
            check_fits(entry.mig_devices, model, gpu=index)
            layout[index] = {name: count for name, count in entry.mig_devices.items() if count}
    return tuple(layout)


def mig_instances(layout: Sequence[GpuLayout]) -> dict[str, int]:
    """MIG devices on the node by profile, summed over GPUs."""
    totals: dict[str, int] = {}
    for gpu in layout:
        for name, count in (gpu or {}).items():
            totals[name] = totals.get(name, 0) + count
    return totals


def single_strategy_profile(layout: Sequence[GpuLayout]) -> str | None:
    """The one profile the single strategy can advertise, or None when the
    layout is invalid for it (the device plugin's rules: every GPU MIG-enabled,
    none empty, one profile only). Only meaningful when some GPU has MIG on."""
    if any(gpu is None or not gpu for gpu in layout):
        return None
    profiles = set(mig_instances(layout))
    return profiles.pop() if len(profiles) == 1 else None


def advertised_resources(layout: Sequence[GpuLayout], strategy: MigStrategy) -> dict[str, int]:
    """The GPU extended resources the device plugin advertises for `layout`.

    none: every physical GPU as `nvidia.com/gpu`. single: all MIG off → the
    GPUs; all MIG on with one profile → `nvidia.com/gpu` = instances; anything
    else → `nvidia.com/gpu: 0` (the device plugin rejects it). mixed: GPUs with
    MIG off as `nvidia.com/gpu`, instances as `nvidia.com/mig-<profile>`."""
    full = sum(1 for gpu in layout if gpu is None)
    if strategy == "none" or full == len(layout):
        return {GPU_RESOURCE: len(layout)}
    instances = mig_instances(layout)
    if strategy == "single":
        profile = single_strategy_profile(layout)
        return {GPU_RESOURCE: instances[profile] if profile else 0}
    return {GPU_RESOURCE: full, **{f"{MIG_RESOURCE_PREFIX}{name}": count for name, count in sorted(instances.items())}}


def default_mig_parted_config() -> str:
    """config.yaml of a `default-mig-parted-config` for the models gpuctl knows,
    shaped like NVIDIA/gpu-operator's: all-disabled, all-enabled, one
    `all-<profile>` per profile (device-filtered where models differ in how many
    fit, unfiltered otherwise, so applying it to a model without that profile
    fails, as with the operator's), and a device-filtered all-balanced."""
    configs: dict[str, list[dict[str, Any]]] = {
        "all-disabled": [{"devices": "all", "mig-enabled": False}],
        "all-enabled": [{"devices": "all", "mig-enabled": True, "mig-devices": {}}],
    }
    by_profile: dict[str, dict[int, list[str]]] = {}
    for model in MIG_MODELS.values():
        for profile in model.profiles.values():
            by_profile.setdefault(profile.name, {}).setdefault(profile.max_count, []).extend(model.device_ids)
    for name, counts in by_profile.items():
        entries: list[dict[str, Any]] = []
        for count, device_ids in counts.items():
            entry: dict[str, Any] = {"devices": "all", "mig-enabled": True, "mig-devices": {name: count}}
            entries.append({"device-filter": device_ids, **entry} if len(counts) > 1 else entry)
        configs[f"all-{name}"] = entries
    configs["all-balanced"] = [
        {"device-filter": list(model.device_ids), "devices": "all", "mig-enabled": True, "mig-devices": dict(model.balanced)}
        for model in MIG_MODELS.values()
    ]
    return yaml.safe_dump({"version": "v1", "mig-configs": configs}, sort_keys=False)
