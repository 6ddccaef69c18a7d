"""A simulated GPU fleet and its telemetry, for the demo and the test bed; the demo cluster as it evolves
(`world`) and the simulated Kubernetes API the playbook engine acts on in `--demo` (`api`)."""

from gpuctl.sim.fleet import Fleet, SimGpu, SimNamespace, SimNode, SimPdb, SimPod, build_fleet

__all__ = ["Fleet", "SimGpu", "SimNamespace", "SimNode", "SimPdb", "SimPod", "build_fleet"]
