from gpuctl.state.pools import DEFAULT_POOL, pool_for, pool_labels


def test_known_labels_in_order() -> None:
    labels = {"cloud.google.com/gke-nodepool": "gke-a100", "agentpool": "aks"}
    assert pool_for(labels) == "gke-a100"
    assert pool_for({"karpenter.sh/nodepool": "gpu-spot", **labels}) == "gpu-spot"
    assert pool_for({"eks.amazonaws.com/nodegroup": "ng-h100"}) == "ng-h100"
    assert pool_for({"kubernetes.azure.com/agentpool": "gpupool"}) == "gpupool"
    assert pool_for({"gpuctl.io/pool": "research"}) == "research"


def test_configured_label_wins() -> None:
    labels = {"karpenter.sh/nodepool": "gpu-spot", "team": "vision"}
    assert pool_for(labels, pool_labels("team")) == "vision"
    # Configured but absent: fall back to the known labels.
    assert pool_for({"karpenter.sh/nodepool": "gpu-spot"}, pool_labels("team")) == "gpu-spot"
    assert pool_labels("agentpool").count("agentpool") == 1


def test_fallbacks_product_then_default() -> None:
    assert pool_for({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}) == "NVIDIA-H100-80GB-HBM3"
    assert pool_for({}) == DEFAULT_POOL
    assert pool_for({"karpenter.sh/nodepool": ""}) == DEFAULT_POOL  # empty values don't count
