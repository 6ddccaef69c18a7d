"""Answers derived from a Snapshot, shared by every front end: the TUI, the Slack bot, the CLI, playbooks.

Pure functions and small classes over `gpuctl.model`; nothing here imports
Textual, talks to a cluster or formats text (text lives in `gpuctl.render`).

- `states`: what a pod or a GPU is doing now (busy, quiet, idle, not running, unmeasured, free).
- `fleet`: `FleetIndex`, one snapshot grouped and summed (pool -> nodes -> GPUs,
  node -> pods, per-node busy/idle counts) so nobody scans the whole fleet twice;
  `totals` (the fleet's GPUs busy/idle/quiet/free) and `idle_holders` (idle pods, worst first).
- `filter`: the `/` filter language (`ns:team-a pool:a100 h100`) and the fields it searches.
"""

from gpuctl.query.filter import Facets, Filter
from gpuctl.query.fleet import FleetIndex, NodeStats, Totals, idle_holders, totals
from gpuctl.query.states import GpuState, PodState, gpu_state, pod_state

__all__ = [
    "Facets", "Filter", "FleetIndex", "GpuState", "NodeStats", "PodState", "Totals",
    "gpu_state", "idle_holders", "pod_state", "totals",
]  # fmt: skip
