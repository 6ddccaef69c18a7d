"""deploy/ on the real API server, and gpuctl running as the ServiceAccount it installs.

The overlays apply server-side with kubectl built at the control plane's version (its built-in
kustomize renders them), and so does a site overlay on top of one (policy replaced, image set); the
Deployment's pod passes the `restricted` Pod Security Standard its namespace enforces; a token from
the TokenRequest API lets `gpuctl snapshot` read everything it watches, and `gpuctl playbook run`
act for a mapped user through impersonation (the cluster refuses a user without RBAC); access
reviews show what the ServiceAccount can NOT do; `gpuctl serve` (the Deployment's process) with that
token carries out an approved run, and two of them carry a Slack approval through a leader kill
(serve_support.leader_kill, the scenario test_serve_ha runs as the test bed's service identity) with
nothing but the overlay's RBAC. Pods do not really run on kwok nodes, so `gpuctl` runs here as a local
process holding the ServiceAccount's token.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from gpuctl.playbooks.leader import LEADER
from gpuctl.playbooks.runs import run_name
from testbed.controlplane import ADMIN, REPO_ROOT, ControlPlane
from testbed.gpu_operator import OPERATOR_NAMESPACE
from testbed.kube import RestClient, apply_objects
from testbed.kubectl import Kubectl, build_kubectl
from testbed.objects import namespace_object, role, role_binding, rule, unique
from testbed.slack import FakeSlack
from testbed.waiting import poll
from tests.integration.engine_support import NOW, QUOTA_KEY, engine_at, run_grants, write_playbooks
from tests.integration.serve_support import leader_kill, replica

pytestmark = pytest.mark.testbed

DEPLOY = REPO_ROOT / "deploy"
NAMESPACE = "gpuctl"
SA_USER = f"system:serviceaccount:{NAMESPACE}:gpuctl"
SA_GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"]
SELECTOR = "app.kubernetes.io/name=gpuctl,app.kubernetes.io/component=serve"
# The site's policy: the ServiceAccount acts for the test bed's users; both teams may change GPU quotas
# in dep-* namespaces (so a refusal below comes from the cluster's RBAC, not from gpuctl's policy).
SITE_POLICY: dict[str, Any] = {
    "roles": {
        "service": {"users": [SA_USER], "act_as": {"users": ["user-*"], "groups": ["team-*"]}},
        "team-a": {"groups": ["team-a"], "run": [NOW, "adjust-quota"], "namespaces": ["dep-*"]},
        "team-b": {"groups": ["team-b"], "run": [NOW], "approve": ["adjust-quota"], "namespaces": ["dep-*"]},
    },
    "unmapped": "none",
}


def site_overlay(directory: Path) -> Path:
    """A site's overlay over deploy/overlays/http: its image, its policy in place of the safe default."""
    directory.mkdir()
    (directory / "policy.yaml").write_text(yaml.safe_dump(SITE_POLICY))
    base = os.path.relpath(DEPLOY / "overlays" / "http", directory)  # kustomize takes no absolute paths
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "images": [{"name": "gpuctl", "newName": "registry.example.com/gpuctl", "newTag": "0.1.0"}],
        "configMapGenerator": [
            {"name": "gpuctl-config", "namespace": NAMESPACE, "behavior": "merge", "files": ["policy.yaml"]}
        ],
    }))  # fmt: skip
    return directory


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(await asyncio.to_thread(build_kubectl), control_plane.kubeconfig(ADMIN))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def site(kubectl: Kubectl, admin: RestClient, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Both overlays applied, then the site's overlay over the HTTP one; the objects it rendered."""
    await apply_objects(admin, [namespace_object(OPERATOR_NAMESPACE)])  # exists wherever the GPU Operator runs
    directory = site_overlay(tmp_path_factory.mktemp("deploy") / "site")
    for overlay in (DEPLOY / "overlays" / "socket-mode", DEPLOY / "overlays" / "http", directory):
        ran = await kubectl("apply", "--server-side", "-k", str(overlay))
        assert ran.code == 0, f"{overlay}: {ran.err}"
    rendered = await kubectl("kustomize", str(directory))
    assert rendered.code == 0, rendered.err
    return [doc for doc in yaml.safe_load_all(rendered.out) if doc]


def _find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


async def test_every_rendered_object_is_in_the_cluster_as_rendered(admin: RestClient, site: list[dict[str, Any]]) -> None:
    kinds = sorted({o["kind"] for o in site})
    assert kinds == sorted([
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment", "Namespace",
        "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
    ])  # fmt: skip
    for obj in site:
        got = await admin.get(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        assert got.status == 200, f"{obj['kind']} {obj['metadata']['name']}: {got.status}"
        assert got.body["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpuctl"
    config = _find(site, "ConfigMap")
    assert yaml.safe_load(config["data"]["policy.yaml"]) == SITE_POLICY
    deployment = (await admin.get("Deployment", "gpuctl", NAMESPACE)).body
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/gpuctl:0.1.0" and container["args"] == ["serve"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]  # the hashed name: edits roll the pods
    env = {e["name"] for e in container["env"]}
    assert {"GPUCTL_SLACK_BOT_TOKEN", "GPUCTL_SLACK_SIGNING_SECRET"} <= env and "GPUCTL_SLACK_APP_TOKEN" not in env


async def test_the_pod_passes_the_restricted_pod_security_standard(admin: RestClient, site: list[dict[str, Any]]) -> None:
    """The namespace enforces `restricted`: the Deployment's pod is admitted (a server-side dry run of
    exactly its template), the same pod without its security settings is not."""
    template = _find(site, "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "gpuctl-", "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}  # fmt: skip
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    admitted = await admin.request("POST", path, pod, params={"dryRun": "All"})
    assert admitted.status == 201, admitted.body
    loose = json.loads(json.dumps(pod))
    del loose["spec"]["containers"][0]["securityContext"]
    refused = await admin.request("POST", path, loose, params={"dryRun": "All"})
    assert refused.status == 403 and 'violates PodSecurity "restricted' in refused.body["message"], refused.body
    # And the ReplicaSet controller, creating the real pods, was admitted too.
    pods = await poll(lambda: admin.list("Pod", NAMESPACE, labelSelector=SELECTOR),
                      lambda r: len(r.body.get("items") or []) >= 1, what="the Deployment's pods")  # fmt: skip
    assert all(p["spec"]["serviceAccountName"] == "gpuctl" for p in pods.body["items"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sa_kubeconfig(control_plane: ControlPlane, admin: RestClient, kubectl: Kubectl, site: list[dict[str, Any]]) -> Path:
    """A kubeconfig holding a token of ServiceAccount gpuctl (TokenRequest API), once RBAC has its bindings."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    issued = await admin.request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/gpuctl/token", request)
    assert issued.status == 201, issued.body
    path = control_plane.token_kubeconfig("gpuctl-sa", issued.body["status"]["token"])
    as_sa = Kubectl(kubectl.binary, path)
    whoami = await as_sa("auth", "whoami", "-o", "json")
    assert json.loads(whoami.out)["status"]["userInfo"]["username"] == SA_USER, whoami.err
    await poll(lambda: as_sa("auth", "can-i", "update", "playbookruns.gpuctl.io", "--subresource=status", "-n", NAMESPACE),
               lambda r: r.out.strip() == "yes", what="the ServiceAccount's bindings to reach RBAC")  # fmt: skip
    return path


# (verb, resource, subresource, group, namespace, name) → whether ServiceAccount gpuctl may.
Attrs = tuple[str, str, str, str, str, str]
MAY: dict[Attrs, bool] = {
    # What it does as itself: read the live picture and the pools and queues it plans on ...
    ("watch", "pods", "", "", "", ""): True,
    ("list", "nodes", "", "", "", ""): True,
    ("list", "resourcequotas", "", "", "", ""): True,
    ("get", "machinedeployments", "scale", "cluster.x-k8s.io", "capi", "md"): True,
    ("list", "nodepools", "", "karpenter.sh", "", ""): True,
    ("get", "clusterqueues", "", "kueue.x-k8s.io", "", "cq"): True,
    ("get", "configmaps", "", "", OPERATOR_NAMESPACE, "default-mig-parted-config"): True,
    ("list", "limitranges", "", "", "", ""): True,  # gpuctl doctor
    ("list", "priorityclasses", "", "scheduling.k8s.io", "", ""): True,
    ("create", "priorityclasses", "", "scheduling.k8s.io", "", ""): False,
    # ... its own Leases, run status and the kill switch, in its namespace only ...
    ("create", "leases", "", "coordination.k8s.io", NAMESPACE, ""): True,
    ("update", "playbookruns", "status", "gpuctl.io", NAMESPACE, "r"): True,
    ("get", "configmaps", "", "", NAMESPACE, "gpuctl-kill-switch"): True,
    ("create", "leases", "", "coordination.k8s.io", "kube-system", ""): False,
    ("update", "playbookruns", "status", "gpuctl.io", "team-a", "r"): False,
    # ... and impersonate users and the listed groups, for everything else.
    ("impersonate", "users", "", "", "", "user-a"): True,
    ("impersonate", "groups", "", "", "", "team-a"): True,
    # Never, as itself: delete or evict pods, write nodes or quotas, read Secrets anywhere ...
    ("delete", "pods", "", "", "team-a", ""): False,
    ("create", "pods", "eviction", "", "team-a", "p"): False,
    ("create", "pods", "exec", "", "team-a", "p"): False,
    ("patch", "nodes", "", "", "", "n"): False,
    ("update", "nodes", "", "", "", "n"): False,
    ("patch", "resourcequotas", "", "", "team-a", "q"): False,
    ("patch", "machinedeployments", "scale", "cluster.x-k8s.io", "capi", "md"): False,
    ("patch", "nodepools", "", "karpenter.sh", "", "np"): False,
    ("get", "secrets", "", "", "kube-system", "s"): False,
    ("list", "secrets", "", "", "", ""): False,
    ("get", "secrets", "", "", NAMESPACE, "gpuctl-slack"): False,
    ("get", "configmaps", "", "", "kube-system", "c"): False,
    ("get", "configmaps", "", "", NAMESPACE, "other"): False,
    ("create", "configmaps", "", "", NAMESPACE, ""): False,  # it cannot release its own kill switch ...
    ("delete", "configmaps", "", "", NAMESPACE, "gpuctl-kill-switch"): False,
    ("create", "playbookruns", "", "gpuctl.io", NAMESPACE, ""): False,  # ... nor submit or approve runs as itself
    ("approve", "playbookruns", "", "gpuctl.io", NAMESPACE, "r"): False,
    ("delete", "playbookruns", "", "gpuctl.io", NAMESPACE, "r"): False,
    ("create", "events", "", "events.k8s.io", "team-a", ""): False,
    ("create", "serviceaccounts", "token", "", NAMESPACE, "gpuctl"): False,
    # ... nor widen its own rights: RBAC objects, bind, escalate ...
    ("create", "clusterroles", "", "rbac.authorization.k8s.io", "", ""): False,
    ("escalate", "clusterroles", "", "rbac.authorization.k8s.io", "", "gpuctl:operator"): False,
    ("bind", "clusterroles", "", "rbac.authorization.k8s.io", "", "cluster-admin"): False,
    ("create", "clusterrolebindings", "", "rbac.authorization.k8s.io", "", ""): False,
    ("create", "rolebindings", "", "rbac.authorization.k8s.io", NAMESPACE, ""): False,
    ("patch", "roles", "", "rbac.authorization.k8s.io", NAMESPACE, "gpuctl"): False,
    ("create", "subjectaccessreviews", "", "authorization.k8s.io", "", ""): False,
    # ... nor become anything beyond people: service accounts, privileged or unlisted groups, uids, extras.
    ("impersonate", "serviceaccounts", "", "", "kube-system", "default"): False,
    ("impersonate", "groups", "", "", "", "system:masters"): False,
    ("impersonate", "groups", "", "", "", "system:nodes"): False,
    ("impersonate", "groups", "", "", "", "some-other-team"): False,
    ("impersonate", "uids", "", "authentication.k8s.io", "", "1"): False,
    ("impersonate", "userextras", "scopes", "authentication.k8s.io", "", "x"): False,
    # Cluster-scoped writes of any kind.
    ("delete", "namespaces", "", "", "", "team-a"): False,
    ("create", "customresourcedefinitions", "", "apiextensions.k8s.io", "", ""): False,
}


async def _allowed_to(admin: RestClient, user: str, groups: list[str], attributes: Mapping[str, str]) -> bool:
    """Whether the cluster's RBAC lets `user` in `groups` do `attributes` (a SubjectAccessReview)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}  # fmt: skip
    answer = await admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert answer.status == 201, answer.body
    return bool(answer.body["status"].get("allowed"))


async def _allowed(admin: RestClient, attrs: Attrs) -> bool:
    fields = ("verb", "resource", "subresource", "group", "namespace", "name")
    return await _allowed_to(admin, SA_USER, SA_GROUPS, {k: v for k, v in zip(fields, attrs) if v})


async def test_access_reviews_show_what_the_service_account_may_and_may_not_do(admin: RestClient, sa_kubeconfig: Path) -> None:
    answers = await asyncio.gather(*(_allowed(admin, attrs) for attrs in MAY))
    wrong = [f"{attrs}: allowed={got}" for (attrs, want), got in zip(MAY.items(), answers) if got != want]
    assert wrong == []


def gpuctl(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `gpuctl ARGS` in its own process, with no GPUCTL_* from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCTL_")}
    return subprocess.run([sys.executable, "-m", "gpuctl", *args], capture_output=True, text=True, timeout=timeout_s,
                          cwd=REPO_ROOT, env=env)  # fmt: skip


async def test_gpuctl_snapshot_as_the_service_account_reads_everything_it_watches(sa_kubeconfig: Path, gpu_node: str) -> None:
    done = await asyncio.to_thread(gpuctl, "snapshot", "--json", "--kubeconfig", str(sa_kubeconfig))
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["watch"]["connected"] and snapshot["watch"]["unreadable"] == [] and snapshot["failures"] == []
    assert gpu_node in {n["name"] for n in snapshot["nodes"]}


@dataclass(frozen=True)
class Team:
    """A dep-a-… namespace whose GPU quota (4) team-a may patch, and the gpuctl flags that act there as the
    ServiceAccount (the site policy, a fresh audit log, the site playbook adjust-quota-now)."""

    namespace: str
    flags: list[str]
    audit: Path

    async def hard(self, admin: RestClient) -> str:
        return str((await admin.get("ResourceQuota", "gpus", self.namespace)).body["spec"]["hard"][QUOTA_KEY])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def runs_granted(admin: RestClient, site: list[dict[str, Any]]) -> None:
    """The site lets both teams submit runs (created as the requester), and team b approve them."""
    await apply_objects(admin, run_grants(NAMESPACE))
    approve = {"verb": "approve", "resource": "playbookruns", "group": "gpuctl.io", "namespace": NAMESPACE}
    await poll(lambda: _allowed_to(admin, "user-b", ["team-b"], approve), what="team-b's approver grant to reach RBAC")


@pytest_asyncio.fixture(loop_scope="session")
async def team(admin: RestClient, sa_kubeconfig: Path, runs_granted: None, tmp_path: Path) -> Team:
    namespace = unique("dep-a")
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpus", "namespace": namespace},
             "spec": {"hard": {QUOTA_KEY: "4"}}}  # fmt: skip
    await apply_objects(admin, [
        namespace_object(namespace), quota,
        role("quota-editor", namespace, [rule("", ["resourcequotas"], ["get", "list", "patch"])]),
        role_binding("team-a-edits-quotas", namespace, role="quota-editor", group="team-a"),
    ])  # fmt: skip
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(SITE_POLICY))
    audit = tmp_path / "audit.sqlite"
    flags = ["--kubeconfig", str(sa_kubeconfig), "--policy", str(tmp_path / "policy.yaml"), "--audit", str(audit),
             "--gpuctl-namespace", NAMESPACE, "--playbooks-dir", str(write_playbooks(tmp_path))]  # fmt: skip
    # RBAC caches: wait until user-a may patch the quota, as the cluster sees it.
    patch = {"verb": "patch", "resource": "resourcequotas", "namespace": namespace}
    await poll(lambda: _allowed_to(admin, "user-a", ["team-a"], patch), what="team-a's quota grant to reach RBAC")
    return Team(namespace, flags, audit)


async def _run(admin: RestClient, name: str) -> dict[str, Any]:
    got = await admin.request("GET", f"/apis/gpuctl.io/v1alpha1/namespaces/{NAMESPACE}/playbookruns/{name}")
    assert got.status == 200, got.body
    return got.body


async def _audit_intact(audit: Path) -> None:
    verified = await asyncio.to_thread(gpuctl, "audit", "verify", "--audit", str(audit))
    assert verified.returncode == 0, verified.stderr


async def test_a_playbook_run_as_a_mapped_user_succeeds_and_one_without_rbac_is_refused_by_the_cluster(
    admin: RestClient, team: Team
) -> None:
    """The ServiceAccount plans and executes adjust-quota-now (no approval) for user-a, whose team may
    edit the quota: the write is made as user-a. For user-b, whom gpuctl's policy allows but the
    cluster's RBAC does not, the cluster refuses and nothing changes."""

    async def run_as(user: str, group: str, value: str, key: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(gpuctl, "playbook", "run", NOW, "-p", f"namespace={team.namespace}",
                                       "-p", f"quota={value}", "--yes", "--key", key, "--as", user, "--as-group", group,
                                       *team.flags)  # fmt: skip

    done = await run_as("user-a", "team-a", "8", key := unique("deploy-now"))
    assert done.returncode == 0, done.stderr
    assert await team.hard(admin) == "8"
    run = await _run(admin, run_name(NOW, key))
    assert run["status"]["phase"] == "Succeeded" and run["spec"]["requester"]["user"] == "user-a"

    refused = await run_as("user-b", "team-b", "6", unique("deploy-now"))
    assert refused.returncode == 6, refused.stderr  # refused, nothing changed: the plan's dry run, made as user-b
    assert "the cluster refuses it" in refused.stderr and 'User "user-b" cannot patch' in refused.stderr, refused.stderr
    assert await team.hard(admin) == "8"
    await _audit_intact(team.audit)


async def test_gpuctl_serve_as_the_service_account_carries_out_an_approved_run(
    admin: RestClient, team: Team, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    """user-a submits the shipped adjust-quota (approval required) and user-b approves it, both through
    the ServiceAccount; `gpuctl serve` (bot and executor, the shipped playbook logic) holding the
    ServiceAccount's token is ready and leads (its Lease), claims the run (its status), and writes the
    quota as user-a; SIGTERM: it vacates the Lease and exits 0."""
    key = unique("deploy-approved")
    submitted = await asyncio.to_thread(gpuctl, "playbook", "run", "adjust-quota", "-p", f"namespace={team.namespace}",
                                        "-p", "quota=6", "--yes", "--key", key, "--as", "user-a", "--as-group", "team-a",
                                        *team.flags)  # fmt: skip
    assert submitted.returncode == 0 and "awaiting approval" in submitted.stdout, submitted.stderr
    run = run_name("adjust-quota", key)
    approved = await asyncio.to_thread(gpuctl, "playbook", "approve", run, "--as", "user-b", "--as-group", "team-b", *team.flags)
    assert approved.returncode == 0, approved.stderr
    async with (
        FakeSlack() as slack,
        replica("deploy-serve", sa_kubeconfig, tmp_path, NAMESPACE, slack, str(team.audit), module="gpuctl") as serving,
    ):
        health = await poll(serving.health, lambda h: h["role"] == "leader", what="gpuctl serve to lead")
        assert health["ready"] and health["cluster_reachable"] and health["bot"] == "serving", health
        done = await poll(lambda: _run(admin, run), lambda r: r["status"].get("phase") in ("Succeeded", "Failed"),
                          timeout_s=60, what=f"gpuctl serve to carry out {run}")  # fmt: skip
        serving.process.send_signal(signal.SIGTERM)  # it gives up leadership and exits once nothing is in progress
        async with asyncio.timeout(60):
            code = await serving.process.wait()
    stderr = (tmp_path / "deploy-serve" / "stderr.log").read_text()
    assert done["status"]["phase"] == "Succeeded", stderr
    assert done["status"]["result"]["executedBy"] == f"deploy-serve/{run}"
    assert code == 0, stderr
    assert not (await admin.get("Lease", LEADER.lease_name, NAMESPACE)).body["spec"].get("holderIdentity")
    assert await team.hard(admin) == "6"
    await _audit_intact(team.audit)


async def test_two_gpuctl_serve_replicas_as_the_service_account_carry_a_slack_approval_through_a_leader_kill(
    admin: RestClient, control_plane: ControlPlane, sa_kubeconfig: Path, runs_granted: None, tmp_path: Path,
    postgres_audit_url: str,
) -> None:  # fmt: skip
    """serve_support.leader_kill with nothing but the applied overlay's RBAC: the ServiceAccount serves,
    elects a leader in namespace gpuctl, executes the Slack approval as the requester (impersonated),
    takes over from the killed leader and marks its run Interrupted, never executing it twice."""
    async with engine_at(control_plane, tmp_path, NAMESPACE, kubeconfig=sa_kubeconfig, audit=postgres_audit_url) as front:
        await leader_kill(admin, front, sa_kubeconfig, tmp_path, NAMESPACE, postgres_audit_url)
