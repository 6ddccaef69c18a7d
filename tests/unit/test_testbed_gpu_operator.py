"""The GPU operator's view of a MIG node, as the test bed builds it: the
default config, GFD labels and the node objects the MIG simulator manages."""

from __future__ import annotations

import pytest

from gpuctl.migparted import MIG_MODELS, MigPartedConfig, apply_config
from testbed.gpu_operator import (
    MIG_MANAGER_DEPLOY_LABEL,
    PHYSICAL_GPUS_ANNOTATION,
    default_mig_parted_config,
    gfd_labels,
    label_patch,
    mig_node_object,
    resource_patch,
)

H100 = MIG_MODELS["NVIDIA-H100-80GB-HBM3"]


def default() -> MigPartedConfig:
    return MigPartedConfig.parse(default_mig_parted_config(), source="default")


def test_the_default_config_has_the_operator_names() -> None:
    names = set(default().mig_configs)
    assert {"all-disabled", "all-enabled", "all-balanced", "all-1g.10gb", "all-1g.5gb", "all-7g.80gb", "all-7g.141gb"} <= names


@pytest.mark.parametrize("model", list(MIG_MODELS.values()), ids=lambda m: m.product)
def test_every_model_can_apply_its_own_profiles_and_balanced(model) -> None:
    config = default()
    for profile in model.profiles.values():
        layout = apply_config(config.select(f"all-{profile.name}", source="default"), model, (None,) * 2)
        assert layout == ({profile.name: profile.max_count},) * 2
    assert apply_config(config.select("all-balanced", source="default"), model, (None,)) == (dict(model.balanced),)


def test_one_profile_name_with_different_counts_is_device_filtered() -> None:
    entries = default().select("all-1g.10gb", source="default")
    assert len(entries) == 2 and all(e.device_filter for e in entries)
    assert apply_config(entries, MIG_MODELS["NVIDIA-A100-SXM4-40GB"], (None,)) == ({"1g.10gb": 4},)
    assert apply_config(entries, H100, (None,)) == ({"1g.10gb": 7},)


def test_single_strategy_renames_the_product_and_flags_an_invalid_layout() -> None:
    assert gfd_labels(H100, ({"1g.10gb": 7},) * 2, "single")["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    invalid = gfd_labels(H100, ({"1g.10gb": 2, "3g.40gb": 1},), "single")
    assert invalid["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-INVALID"
    assert invalid["nvidia.com/gpu.count"] == "0"
    assert gfd_labels(H100, (None, None), "single")["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_patches_remove_what_the_new_layout_no_longer_has() -> None:
    old = gfd_labels(H100, ({"1g.10gb": 7},), "mixed")
    new = gfd_labels(H100, ({"7g.80gb": 1},), "mixed")
    patch = label_patch({**old, "team": "a"}, new)
    assert patch["nvidia.com/mig-1g.10gb.count"] is None
    assert patch["nvidia.com/mig-7g.80gb.count"] == "1"
    assert "team" not in patch
    assert resource_patch({"cpu": "96", "nvidia.com/mig-1g.10gb": "7"}, {"nvidia.com/gpu": 0, "nvidia.com/mig-7g.80gb": 1}) == {
        "nvidia.com/mig-1g.10gb": None,
        "nvidia.com/gpu": "0",
        "nvidia.com/mig-7g.80gb": "1",
    }


def test_a_mig_node_shows_its_applied_config() -> None:
    node = mig_node_object("n", product=H100.product, gpus=4, strategy="mixed", applied="all-balanced")
    labels = node["metadata"]["labels"]
    assert labels[MIG_MANAGER_DEPLOY_LABEL] == "true"
    assert labels["nvidia.com/mig.config"] == "all-balanced"
    assert labels["nvidia.com/mig.config.state"] == "success"
    assert labels["nvidia.com/mig-1g.10gb.count"] == "8"
    assert node["metadata"]["annotations"][PHYSICAL_GPUS_ANNOTATION] == "4"
    assert node["status"]["capacity"]["nvidia.com/mig-3g.40gb"] == "4"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "0"
