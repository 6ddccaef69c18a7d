"""A simulated GPU fleet and its telemetry, for the demo and the test bed."""

from gpuctl.sim.fleet import Fleet, SimGpu, SimNamespace, SimNode, SimPdb, SimPod, build_fleet

__all__ = ["Fleet", "SimGpu", "SimNamespace", "SimNode", "SimPdb", "SimPod", "build_fleet"]
