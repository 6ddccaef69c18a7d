from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gpuctl.errors import (
    AlreadyExists,
    ApiRejected,
    ClusterUnreachable,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
)
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import eviction_result
from gpuctl.playbooks.kubeapi import ApiCall, ApiResponse, KubeApi, ObjectRef, impersonation_headers, refusal, retry_after_seconds
from gpuctl.sources.kube.connect import connect

WHO = Identity(user="user-a", groups=("team-a", "gpu-admins", "system:authenticated"))


def _answer(status: int, body: dict | None = None, headers: dict[str, str] | None = None) -> ApiResponse:
    body = body or {}
    call = ApiCall(
        method="POST",
        path="/api/v1/namespaces/a/pods/p/eviction",
        status=status,
        audit_id="4f1c",
        acting_as=WHO,
        dry_run=False,
        reason=body.get("reason"),
        message=body.get("message"),
    )
    return ApiResponse(call=call, body=body, headers=CIMultiDict(headers or {}))


def test_one_impersonate_group_header_per_group_in_order() -> None:
    headers = impersonation_headers(WHO)
    assert headers.getall("Impersonate-User") == ["user-a"]
    assert headers.getall("Impersonate-Group") == ["team-a", "gpu-admins", "system:authenticated"]
    assert impersonation_headers(Identity(user="solo")).getall("Impersonate-Group", []) == []


@pytest.mark.parametrize("bad", ["team-a\r\nImpersonate-User: admin", "équipe", ""])
def test_header_injection_and_non_ascii_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot act as"):
        impersonation_headers(Identity(user="user-a", groups=(bad,)))


def test_object_paths() -> None:
    assert ObjectRef(plural="pods", namespace="a", name="p").path("eviction") == "/api/v1/namespaces/a/pods/p/eviction"
    assert ObjectRef(plural="nodes", name="n1").path() == "/api/v1/nodes/n1"
    md = ObjectRef(group="cluster.x-k8s.io", version="v1beta2", plural="machinedeployments", namespace="c", name="gpu")
    assert md.path("scale") == "/apis/cluster.x-k8s.io/v1beta2/namespaces/c/machinedeployments/gpu/scale"
    assert str(md) == "machinedeployments.cluster.x-k8s.io c/gpu"


@pytest.mark.parametrize(("value", "seconds"), [("10", 10), (" 0 ", 0), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_retry_after(value: str | None, seconds: int | None) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (422, "Invalid", ApiRejected),
        (500, "InternalError", ApiRejected),
    ],
)
def test_refusals_map_to_the_error_tree(status: int, reason: str, error: type[Exception]) -> None:
    answer = _answer(status, {"kind": "Status", "reason": reason, "message": "the API's words"})
    mapped = refusal(answer, what="evict pods a/p")
    assert type(mapped) is error
    assert mapped.call is answer.call  # a playbook records the refused request like any other
    assert "evict pods a/p" in str(mapped)
    if status == 403:
        assert str(mapped).startswith("user-a (team-a, gpu-admins, system:authenticated) may not evict pods a/p: the API's words")


def test_eviction_outcomes() -> None:
    pod = ObjectRef(plural="pods", namespace="a", name="p")
    budget = {
        "kind": "Status",
        "reason": "TooManyRequests",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "details": {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods"}]},
    }
    refused = eviction_result(_answer(429, budget, {"Retry-After": "10"}), pod)
    assert (refused.outcome, refused.retry_after_s) == ("pdb_refused", 10)
    assert refused.disruption_budget == "The disruption budget web needs 2 healthy pods"
    assert eviction_result(_answer(201, {"kind": "Status", "status": "Success"}), pod).outcome == "evicted"
    assert eviction_result(_answer(404, {"reason": "NotFound"}), pod).outcome == "gone"
    assert eviction_result(_answer(409, {"reason": "Conflict"}), pod).outcome == "precondition_failed"
    several = {"message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}
    assert eviction_result(_answer(500, several), pod).outcome == "multiple_pdbs"
    with pytest.raises(ApiRejected):  # any other 500 is not a budget question
        eviction_result(_answer(500, {"message": "etcd timeout"}), pod)
    with pytest.raises(Forbidden):
        eviction_result(_answer(403, {"reason": "Forbidden"}), pod)


async def test_no_answer_is_cluster_unreachable_and_records_no_call(dead_kubeconfig) -> None:
    connection = await connect(kubeconfig=dead_kubeconfig)
    calls: list[ApiCall] = []
    try:
        with pytest.raises(ClusterUnreachable, match="connection refused"):
            await KubeApi(connection, on_call=calls.append).request("GET", "/api/v1/namespaces/a/pods/p", acting_as=WHO)
    finally:
        await connection.close()
    assert calls == []
