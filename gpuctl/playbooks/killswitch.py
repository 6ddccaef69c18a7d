"""The kill switch: one command an on-call runs to stop every playbook run in the cluster.

    kubectl -n gpuctl create configmap gpuctl-kill-switch --from-literal=reason="INC-4711: eviction storm"
    kubectl -n gpuctl delete configmap gpuctl-kill-switch          # release it

While the ConfigMap exists (in gpuctl's namespace, the `gpuctl_namespace`
setting), no run starts executing, and a running one stops before its next
write (its phase becomes Cancelled, the audit log says why). Planning,
submitting and approving go on: they change nothing in the cluster, and
approved runs wait for the switch to be released. One process alone can be
stopped with GPUCTL_PLAYBOOKS_DISABLED=true (the `playbooks_disabled` setting).

It fails closed: when gpuctl cannot read the ConfigMap (a 403, the API server
unreachable) it refuses to execute rather than guess. The service identity
reads it through Role gpuctl (deploy/base/rbac.yaml; a person running the
engine with their own credentials, through gpuctl:operator-state in deploy/rbac/).
"""

from __future__ import annotations

from gpuctl.errors import PlaybooksDisabled
from gpuctl.playbooks.kubeapi import KubeApi, ObjectRef, check

CONFIGMAP = "gpuctl-kill-switch"


class KillSwitch:
    def __init__(self, api: KubeApi, namespace: str, *, disabled_here: bool = False) -> None:
        self.api = api
        self.ref = ObjectRef(plural="configmaps", namespace=namespace, name=CONFIGMAP)
        self.disabled_here = disabled_here

    async def check(self) -> None:
        """Raise PlaybooksDisabled while the switch is engaged; Forbidden/ClusterUnreachable if it cannot be read."""
        if self.disabled_here:
            raise PlaybooksDisabled(
                "playbooks are disabled in this process (playbooks_disabled / GPUCTL_PLAYBOOKS_DISABLED)",
                hint="unset it to execute runs again",
            )
        response = await self.api.request("GET", self.ref.path())
        if response.call.status == 404:
            return
        body = check(response, what=f"read the kill switch (ConfigMap {self.ref.namespace}/{CONFIGMAP})")
        reason = (body.get("data") or {}).get("reason")
        raise PlaybooksDisabled(
            f"the kill switch is engaged (ConfigMap {self.ref.namespace}/{CONFIGMAP} exists"
            + (f": {reason}" if reason else "")
            + ")",
            hint=f"when it is safe again: kubectl -n {self.ref.namespace} delete configmap {CONFIGMAP}",
        )
