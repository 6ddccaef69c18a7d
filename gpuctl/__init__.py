"""gpuctl: watch and operate Kubernetes GPU clusters."""

__version__ = "0.1.0"
