"""mig-parted config parsing, fitting configs to GPU models, and the resources
the device plugin advertises for a layout."""

from __future__ import annotations

import pytest

from gpuctl.errors import MigConfigInvalid
from gpuctl.migparted import (
    MIG_MODELS,
    MigConfigEntry,
    MigPartedConfig,
    advertised_resources,
    apply_config,
    gpu_model,
    node_config_map,
)

A100_40 = MIG_MODELS["NVIDIA-A100-SXM4-40GB"]
A100_80 = MIG_MODELS["NVIDIA-A100-SXM4-80GB"]
H100 = MIG_MODELS["NVIDIA-H100-80GB-HBM3"]

# Shaped like NVIDIA/gpu-operator's default-mig-parted-config.
CONFIG = """
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-enabled:
    - devices: all
      mig-enabled: true
      mig-devices: {}
  all-1g.10gb:
    - device-filter: ["0x233010DE", "0x20B210DE"]
      devices: all
      mig-enabled: true
      mig-devices: {"1g.10gb": 7}
    - device-filter: "0x20B010DE"
      devices: all
      mig-enabled: true
      mig-devices: {"1g.10gb": 4}
  all-1g.20gb:
    - devices: all
      mig-enabled: true
      mig-devices: {"1g.20gb": 4}
  half-3g:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices: {"3g.40gb": 2}
  too-many:
    - devices: all
      mig-enabled: true
      mig-devices: {"3g.40gb": 2, "1g.10gb": 1}
"""


def parsed() -> MigPartedConfig:
    return MigPartedConfig.parse(CONFIG, source="gpu-operator/default-mig-parted-config")


def test_parses_the_operator_shape() -> None:
    config = parsed()
    assert sorted(config.mig_configs) == ["all-1g.10gb", "all-1g.20gb", "all-disabled", "all-enabled", "half-3g", "too-many"]
    first, second = config.mig_configs["all-1g.10gb"]
    assert first.device_filter == ("0x233010DE", "0x20B210DE")
    assert second.device_filter == ("0x20B010DE",)  # a single string is one filter
    assert config.mig_configs["half-3g"][0].devices == (0, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: v2\nmig-configs: {a: [{devices: all, mig-enabled: false}]}", "version"),
        ("mig-configs: {a: [{devices: all, mig-enabled: false}]}", "version"),
        ("version: v1\nmig-configs: {}", "mig-configs"),
        ("version: v1\nmig-configs: {a: []}", "mig-configs.a"),
        ("version: v1\nmig-configs: {a: [{devices: some, mig-enabled: false}]}", "mig-configs.a.0.devices"),
        ("version: v1\nmig-configs: {a: [{devices: all}]}", "mig-configs.a.0.mig-enabled"),
        ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: 'true'}]}", "mig-configs.a.0.mig-enabled"),
        ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, mig-devices: {big: 1}}]}", "not a MIG profile"),
        ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, mig-devices: {1g.10gb: 0}}]}", "all counts"),
        ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: false, colour: red}]}", "colour"),
        ("version: v1\nextra: 1\nmig-configs: {a: [{devices: all, mig-enabled: false}]}", "extra"),
        ("version: v1\nmig-configs: [", "not YAML"),
    ],
)
def test_rejects_what_mig_parted_rejects(text: str, expected: str) -> None:
    with pytest.raises(MigConfigInvalid) as error:
        MigPartedConfig.parse(text, source="node-7-mig-config")
    assert str(error.value).startswith("node-7-mig-config: ")
    assert expected in str(error.value)


def test_selecting_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(MigConfigInvalid) as error:
        parsed().select("all-9g.99gb", source="gpu-operator/default-mig-parted-config")
    assert "'all-9g.99gb' is not in gpu-operator/default-mig-parted-config" in str(error.value)
    assert "all-1g.10gb, all-1g.20gb, all-disabled" in str(error.value)


def test_device_filters_pick_the_layout_for_the_model() -> None:
    config = parsed()
    disabled = (None,) * 8
    assert apply_config(config.select("all-1g.10gb", source="x"), H100, disabled) == ({"1g.10gb": 7},) * 8
    assert apply_config(config.select("all-1g.10gb", source="x"), A100_40, disabled) == ({"1g.10gb": 4},) * 8


def one_config(entry: str) -> tuple[MigConfigEntry, ...]:
    return MigPartedConfig.parse(f"version: v1\nmig-configs: {{x: [{entry}]}}", source="x").select("x", source="x")


def test_a_config_matching_no_gpu_changes_nothing() -> None:
    entries = one_config('{device-filter: "0x233510DE", devices: all, mig-enabled: true, mig-devices: {"1g.18gb": 7}}')
    assert apply_config(entries, H100, (None, None)) == (None, None)


def test_indices_leave_other_gpus_as_they_were() -> None:
    before = ({"1g.10gb": 7},) * 4
    after = apply_config(parsed().select("half-3g", source="x"), H100, before)
    assert after == ({"3g.40gb": 2}, {"3g.40gb": 2}, {"1g.10gb": 7}, {"1g.10gb": 7})


@pytest.mark.parametrize(
    ("name", "model", "message"),
    [
        ("all-1g.20gb", A100_40, "MIG profile 1g.20gb does not exist on NVIDIA-A100-SXM4-40GB"),
        ("too-many", H100, "needs 7/7 compute and 9/8 memory slices"),
    ],
)
def test_configs_that_do_not_fit_the_gpu_say_why(name: str, model, message: str) -> None:
    with pytest.raises(MigConfigInvalid) as error:
        apply_config(parsed().select(name, source="x"), model, (None,) * 2)
    assert message in str(error.value)
    assert str(error.value).startswith("GPU 0: ")


def test_more_instances_than_a_profile_allows() -> None:
    entries = one_config('{devices: all, mig-enabled: true, mig-devices: {"2g.20gb": 4}}')
    with pytest.raises(MigConfigInvalid, match=r"4× 2g\.20gb on NVIDIA-A100-SXM4-80GB; at most 3 fit"):
        apply_config(entries, A100_80, (None,))


def test_mig_devices_with_mig_disabled_is_refused() -> None:
    entries = one_config('{devices: all, mig-enabled: false, mig-devices: {"1g.10gb": 1}}')
    with pytest.raises(MigConfigInvalid, match="mig-enabled: false"):
        apply_config(entries, H100, (None,))


def test_every_model_balanced_layout_fits_and_every_profile_fits_alone() -> None:
    for model in MIG_MODELS.values():
        balanced = MigConfigEntry.model_validate({"devices": "all", "mig-enabled": True, "mig-devices": dict(model.balanced)})
        assert apply_config([balanced], model, (None,)) == (dict(model.balanced),)
        for profile in model.profiles.values():
            assert profile.slices * profile.max_count <= 7
            assert profile.memory_slices * profile.max_count <= 8


BALANCED = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}


@pytest.mark.parametrize(
    ("layout", "strategy", "resources"),
    [
        ((None,) * 8, "single", {"nvidia.com/gpu": 8}),
        ((None,) * 8, "mixed", {"nvidia.com/gpu": 8}),
        (({"1g.10gb": 7},) * 8, "single", {"nvidia.com/gpu": 56}),
        (({"1g.10gb": 7},) * 8, "mixed", {"nvidia.com/gpu": 0, "nvidia.com/mig-1g.10gb": 56}),
        ((BALANCED,) * 2, "single", {"nvidia.com/gpu": 0}),  # several profiles: invalid for single
        (({"3g.40gb": 2}, None), "single", {"nvidia.com/gpu": 0}),  # MIG on and off: invalid for single
        (({}, {}), "single", {"nvidia.com/gpu": 0}),  # enabled but empty: invalid for single
        (
            (BALANCED, {"3g.40gb": 2}, None, {}),
            "mixed",
            {"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 3},
        ),
        (({"1g.10gb": 7},) * 2, "none", {"nvidia.com/gpu": 2}),
    ],
)
def test_advertised_resources(layout, strategy, resources) -> None:
    assert advertised_resources(layout, strategy) == resources


def test_gpu_model_reads_renamed_products() -> None:
    assert gpu_model("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb") is H100
    assert gpu_model("NVIDIA-A100-SXM4-80GB") is A100_80
    assert gpu_model("NVIDIA-L4") is None
    assert node_config_map("gpu-7") == "gpu-7-mig-config"
