"""An optional resource RBAC forbids is unreadable, not an outage: the watch stays connected."""

from __future__ import annotations

from gpuctl.errors import ClusterUnreachable, Unauthorized
from gpuctl.sources.kube.reflector import Reflector, Resource
from gpuctl.sources.kube.trim import trim_job, trim_pod
from gpuctl.sources.kubernetes import fold_health, forbidden
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore


async def never(**_: object) -> object:
    raise AssertionError("not called")


def test_a_forbidden_optional_kind_is_unreadable_and_the_rest_decides_connected() -> None:
    store = ClusterStore()
    pods = Reflector(Resource(Kind.POD, "pods", never, trim_pod), store, describe=None, on_health=print)  # type: ignore[arg-type]
    jobs = Reflector(Resource(Kind.JOB, "jobs", never, trim_job, required=False), store, describe=None, on_health=print)  # type: ignore[arg-type]
    pods.connected = True
    jobs.error = Unauthorized("may not list jobs (403 Forbidden)", status=403)
    assert forbidden(jobs) and not forbidden(pods)
    health = fold_health([pods, jobs], context="c")
    assert health.connected and health.error is None and health.unreadable == ("jobs",)

    jobs.error = Unauthorized("credentials rejected (401)", status=401)  # not RBAC: nothing works
    assert not forbidden(jobs)
    assert not fold_health([pods, jobs], context="c").connected
    jobs.error = ClusterUnreachable("refused")
    health = fold_health([pods, jobs], context="c")
    assert not health.connected and health.error == "refused" and health.unreadable == ()
    pods.error, pods.connected = Unauthorized("may not list pods (403 Forbidden)", status=403), False
    assert not forbidden(pods)  # a required kind forbidden is an error, not a smaller picture
