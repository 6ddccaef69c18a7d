"""The live, typed picture of the cluster: raw records in, immutable Snapshots out.

    sources --(records, metrics batches)--> ClusterStore --snapshot()--> Snapshot
                                                 |
                                           SnapshotHub --subscribe()--> Updates (coalesced)
"""

from gpuctl.state.hub import SnapshotHub, Subscription
from gpuctl.state.idle import IdleClock
from gpuctl.state.store import ClusterStore

__all__ = ["ClusterStore", "IdleClock", "SnapshotHub", "Subscription"]
