"""Sources feed the ClusterStore: Kubernetes watchers, Prometheus (DCGM), NVML, the demo simulator.

Each is `async def run(store)` until cancelled (see `gpuctl.sources.base`). Import
the one you need by module; this package imports nothing so `--demo` never
loads the Kubernetes client and `--local` never loads the Prometheus one.
"""
