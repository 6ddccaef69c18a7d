"""Alerts → playbooks through the running bot on the real test bed: `auto` within and beyond its budget,
and the on-call flow issue 11's "Done means" describes, end to end.

The bot is `gpuctl bot serve`'s wiring (running_bot, not --demo) as gpuctl-operator, impersonating whom
it acts for; Slack is testbed.slack's stand-in, every request to the bot signed. In the on-call test
the alert comes from the test bed's real Prometheus + Alertmanager (a rule over a DCGM exporter's idle
GPU), the approved run is carried out by an executor (gpuctl.playbooks.executor) over the bot's engine,
and the Eviction API of the real API server removes the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from gpuctl.bot.engine_link import EngineLink
from gpuctl.bot.engine_seam import APPROVE_ACTION
from gpuctl.bot.lazy_engine import LazyEngine
from gpuctl.bot.server import RunningBot, running_bot
from gpuctl.identity import Identity
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.executor import Executor
from gpuctl.playbooks.leader import Election
from gpuctl.playbooks.runs import run_name
from testbed.controlplane import OPERATOR, ControlPlane
from testbed.fleet_loader import wait_nodes_ready
from testbed.kube import RestClient, apply_objects
from testbed.monitoring import Monitoring, ScrapeJob
from testbed.nodes import gpu_node_object
from testbed.objects import gpu_pod, namespace_object, role, role_binding, rule, unique
from testbed.slack import FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.integration.engine_support import NOW, POLICY, audit_intact, hard, kinds, records, team_namespace, write_playbooks
from tests.integration.test_playbooks_cli import IdleGpuExporter
from tests.unit.bot.conftest import SECRET, bot_settings, write

pytestmark = pytest.mark.testbed

SLACK_A = "U0USERA01"  # user-a (team-a)
SLACK_B = "U0USERB01"  # user-b (team-b): approves
IDENTITY_MAP = f"""\
users:
  {SLACK_A}: {{user: user-a, groups: [team-a]}}
  {SLACK_B}: {{user: user-b, groups: [team-b]}}
"""
CHANNEL = "C0ONCALL1"


@dataclass
class Bed:
    bot: RunningBot
    engine: Engine
    slack: FakeSlack
    sender: SlackSender
    folder: Path


@contextlib.asynccontextmanager
async def bot_on_testbed(plane: ControlPlane, folder: Path, slack: FakeSlack, **settings: Any) -> AsyncIterator[Bed]:
    """A running bot as gpuctl-operator with `settings` (policy, alert rules, playbooks ...), its engine connected."""
    config = bot_settings(
        folder, slack, demo=False, kubeconfig=plane.kubeconfig(OPERATOR), audit=str(folder / "audit.sqlite"),
        slack_identity_map=write(folder, "slack-users.yaml", IDENTITY_MAP), **settings,
    )  # fmt: skip
    async with running_bot(config) as bot:
        await bot.cluster.wait_ready(60)
        assert isinstance(bot.seam, LazyEngine)
        link = await bot.seam.connected(60)
        assert isinstance(link, EngineLink)
        yield Bed(bot, link.engine, slack, SlackSender(bot.url, SECRET, slack), folder)


def alert(fingerprint: str, namespace: str, *, status: str = "firing", name: str = "GpuQuotaTight") -> dict[str, Any]:
    return {
        "status": status, "labels": {"alertname": name, "severity": "warning", "namespace": namespace},
        "annotations": {"summary": f"{namespace} is short of GPU quota"}, "startsAt": "2026-11-30T09:00:00Z",
        "endsAt": "2026-11-30T10:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
    }  # fmt: skip


async def deliver(bot: RunningBot, *alerts: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """One Alertmanager webhook delivery (version 4) to the bot, as Alertmanager posts it."""
    body = {"version": "4", "groupKey": "{}:{alertname=\"GpuQuotaTight\"}", "status": alerts[0]["status"],
            "receiver": "gpuctl", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": list(alerts)}  # fmt: skip
    async with aiohttp.ClientSession() as session, session.post(f"{bot.url}/alertmanager", json=body) as resp:
        return resp.status, json.loads(await resp.text())


def posts(slack: FakeSlack, text: str) -> list[dict[str, Any]]:
    """The top-level posts (not thread replies) in the alert channel whose text contains `text`."""
    return [c.args | {"ts": c.answer.get("ts")} for c in slack.called("chat.postMessage")
            if c.args.get("channel") == CHANNEL and not c.args.get("thread_ts") and text in blocks_text(c.args)]  # fmt: skip


def thread(slack: FakeSlack, ts: str) -> list[str]:
    return [c.args["text"] for c in slack.called("chat.postMessage") if c.args.get("thread_ts") == ts]


# --- auto mode within and beyond its budget ---------------------------------------------------------

AUTO_RULES = f"""\
channel: {CHANNEL}
rules:
  - alert: GpuQuotaTight
    playbook: {NOW}
    params: {{namespace: namespace}}
    fixed: {{quota: "6"}}
    mode: auto
"""


@pytest_asyncio.fixture(loop_scope="session")
async def auto_bed(control_plane: ControlPlane, engine_home: str, tmp_path: Path) -> AsyncIterator[Bed]:
    files = auto_files(tmp_path, engine_home)
    async with FakeSlack() as slack, bot_on_testbed(control_plane, tmp_path, slack, **files) as bed:
        yield bed


def auto_files(folder: Path, home: str) -> dict[str, Any]:
    # adjust-quota-now (needs no approval) may be started by alerts as user-a, once an hour.
    policy = POLICY | {"alerts": [{"playbook": NOW, "run_as": {"user": "user-a", "groups": ["team-a"]}, "max_runs_per_hour": 1}]}
    return {"policy": write(folder, "auto-policy.yaml", yaml.safe_dump(policy)), "playbooks_dir": write_playbooks(folder),
            "gpuctl_namespace": home, "alert_rules": write(folder, "auto-alert-rules.yaml", AUTO_RULES)}  # fmt: skip


async def test_auto_runs_within_the_hourly_budget_and_proposes_beyond_it(admin: RestClient, auto_bed: Bed) -> None:
    bed, slack, metrics = auto_bed, auto_bed.slack, auto_bed.bot.metrics
    first, second = await team_namespace(admin, bed.engine, "a"), await team_namespace(admin, bed.engine, "a")

    # Within the budget: posted, then executed as user-a via the alert; the thread and the post show the result.
    assert await deliver(bed.bot, alert("a0a0a0a0", first)) == (200, {"posted": 1})
    (post,) = posts(slack, "a0a0a0a0")
    assert "Playbook `adjust-quota-now` (auto) with" in blocks_text(post) and "auto: running now as user-a (team-a)" in blocks_text(post)
    said = await poll(lambda: thread(slack, post["ts"]), lambda t: len(t) == 2, timeout_s=60, what="the auto run to end")
    run = run_name(NOW, "auto:a0a0a0a0@2026-11-30T09:00:00+00:00")
    assert said[0].startswith(f"Running `{run}` now as user-a (team-a)") and said[1].startswith(f"run {run}: Succeeded")
    assert await hard(admin, first) == "6"
    (update,) = [c.args for c in slack.called("chat.update") if c.args["ts"] == post["ts"]]
    assert ":white_check_mark: *Succeeded*" in blocks_text(update) and "*GpuQuotaTight* firing" in blocks_text(update)
    found = await records(bed.folder, run)
    assert kinds(found)[0] == "requested" and kinds(found)[-1] == "completed" and "approved" not in kinds(found)
    requested = found[0].actor
    assert requested is not None and requested.identity == Identity(user="user-a", groups=("team-a",))
    assert requested.via == "alert" and requested.detail.startswith("GpuQuotaTight a0a0a0a0@")

    # A repeat of the episode does nothing new.
    assert await deliver(bed.bot, alert("a0a0a0a0", first)) == (200, {"repeats": 1})

    # Beyond the budget (1 an hour): proposed instead, saying why; nothing changes.
    assert await deliver(bed.bot, alert("b1b1b1b1", second)) == (200, {"posted": 1})
    (over,) = posts(slack, "b1b1b1b1")
    text = blocks_text(over)
    assert "auto mode: proposed instead, the hourly budget is spent: 1 of 1 auto runs of adjust-quota-now" in text
    assert f"`/gpu run adjust-quota-now quota=6 namespace={second}`" in text
    assert await hard(admin, second) == "4" and thread(slack, over["ts"]) == []
    assert metrics.runs.get(source="auto", outcome="started") == 1
    assert metrics.runs.get(source="auto", outcome="succeeded") == 1
    assert metrics.runs.get(source="auto", outcome="over_budget") == 1

    # resolved: the thread says so; the post keeps the outcome.
    assert await deliver(bed.bot, alert("a0a0a0a0", first, status="resolved")) == (200, {"resolved": 1})
    await poll(lambda: thread(slack, post["ts"]), lambda t: len(t) == 3, what="the resolution in the thread")
    assert "resolved at 2026-11-30 10:00:00Z" in thread(slack, post["ts"])[2]
    await audit_intact(bed.folder)


async def test_a_restarted_bot_never_runs_an_episode_twice(control_plane: ControlPlane, admin: RestClient, auto_bed: Bed) -> None:
    namespace = await team_namespace(admin, auto_bed.engine, "a")
    assert await deliver(auto_bed.bot, alert("c2c2c2c2", namespace)) == (200, {"posted": 1})
    (post,) = posts(auto_bed.slack, "c2c2c2c2")
    await poll(lambda: thread(auto_bed.slack, post["ts"]), lambda t: len(t) == 2, timeout_s=60, what="the auto run to end")
    # A second bot (a restart: episodes are in memory) gets the same episode: it finds the run, runs nothing.
    home = auto_bed.bot.cluster.settings.gpuctl_namespace
    async with bot_on_testbed(control_plane, auto_bed.folder, auto_bed.slack, **auto_files(auto_bed.folder, home)) as again:
        assert await deliver(again.bot, alert("c2c2c2c2", namespace)) == (200, {"posted": 1})
        reposted = posts(auto_bed.slack, "c2c2c2c2")[-1]
        assert "started run" in blocks_text(reposted) and "before (now Succeeded); nothing new was done" in blocks_text(reposted)
        assert again.bot.alerts.running == set() and thread(auto_bed.slack, reposted["ts"]) == []
    run = run_name(NOW, "auto:c2c2c2c2@2026-11-30T09:00:00+00:00")
    assert kinds(await records(auto_bed.folder, run)).count("execution_started") == 1


# --- the on-call flow: real Alertmanager → proposal → Approve → evicted -------------------------------

ONCALL_PLAYBOOK = "reclaim-idle-gpus-approved"
ONCALL_RULES = {
    "channel": CHANNEL,
    "mention": "S0ONCALL1",
    "rules": [{"alert": "TestGpuIdle", "playbook": ONCALL_PLAYBOOK, "params": {"namespace": ["exported_namespace", "namespace"]},
               "fixed": {"mode": "immediate", "idle_for": "5s"}, "mode": "propose"}],
}  # fmt: skip
IDLE_RULE = {"groups": [{"name": "gpuctl-e2e", "rules": [{
    "alert": "TestGpuIdle", "expr": 'DCGM_FI_DEV_GPU_UTIL{pod!=""} < 5', "for": "8s", "labels": {"severity": "warning"},
    "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.pod }} holds an idle GPU"},
}]}]}  # fmt: skip
ONCALL_POLICY = {
    "roles": {
        "alert-remediation": {"users": ["gpuctl-alerts"], "run": [ONCALL_PLAYBOOK], "namespaces": ["eng-a-*"]},
        "reclaim-approvers": {"groups": ["team-b"], "approve": [ONCALL_PLAYBOOK], "namespaces": ["eng-a-*"]},
    },
    "unmapped": "read_only",
    "alerts": [{"playbook": ONCALL_PLAYBOOK, "run_as": {"user": "gpuctl-alerts", "groups": ["gpu-remediation"]},
                "max_runs_per_hour": 2}],
}  # fmt: skip


def oncall_playbooks(folder: Path) -> Path:
    """Site playbook reclaim-idle-gpus-approved: the shipped reclaim, for idle streaks and pods of seconds (a test's
    Prometheus has no 30 minutes of history), and with approval required: this site wants a person to decide."""
    text = (files("gpuctl.playbooks") / "builtin" / "reclaim-idle-gpus.yaml").read_text(encoding="utf-8")
    site = text.replace("name: reclaim-idle-gpus", f"name: {ONCALL_PLAYBOOK}").replace("min: 30m", "min: 1s")
    site = site.replace("min_pod_age: 30m", "min_pod_age: 1s").replace("  required: false", "  required: true\n  expires_after: 1h")
    assert site.count("1s") == 2 and "required: true" in site
    (folder / "playbooks").mkdir(exist_ok=True)
    (folder / "playbooks" / f"{ONCALL_PLAYBOOK}.yaml").write_text(site)
    return folder / "playbooks"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_idle_gpu_alert_ends_with_one_approval_in_the_pod_evicted_and_audited(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    namespace, node = unique("eng-a-oncall"), unique("oncall")
    writes = [rule("", ["pods"], ["patch"]), rule("events.k8s.io", ["events"], ["create"]),
              rule("", ["pods/eviction"], ["create"])]  # fmt: skip
    await apply_objects(admin, [
        namespace_object(namespace),
        role("reclaimer", namespace, writes),
        role_binding("alerts-reclaim", namespace, role="reclaimer", group="gpu-remediation"),
        role_binding("alerts-request", engine_home, role="gpuctl:playbookrun-requester", group="gpu-remediation",
                     cluster_role=True),
        gpu_node_object(node, labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, resources={"nvidia.com/gpu": 8}),
    ])  # fmt: skip
    await wait_nodes_ready(admin, {node})
    pod = gpu_pod("idle-0", namespace, 1, node=node)
    pod["spec"]["terminationGracePeriodSeconds"] = 0
    await apply_objects(admin, [pod])
    await poll(lambda: admin.get("Pod", "idle-0", namespace), lambda r: r.body.get("status", {}).get("phase") == "Running",
               what="kwok to run idle-0")  # fmt: skip

    labels = {"gpu": "0", "UUID": f"GPU-{node}-0", "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": node,
              "namespace": namespace, "pod": "idle-0", "container": "main"}  # fmt: skip
    port = free_port()
    async with FakeSlack() as slack, IdleGpuExporter(**labels) as exporter, Monitoring(
        tmp_path / "monitoring", jobs=[ScrapeJob("dcgm-exporter", [exporter.url])],
        webhook_url=f"http://127.0.0.1:{port}/alertmanager", extra_rules=IDLE_RULE,
    ) as monitoring:  # fmt: skip
        async with bot_on_testbed(
            control_plane, tmp_path, slack, bot_port=port, prometheus_url=monitoring.prometheus_url,
            idle_window_s=5.0, refresh_s=1.0, gpuctl_namespace=engine_home, playbooks_dir=oncall_playbooks(tmp_path),
            policy=write(tmp_path, "oncall-policy.yaml", yaml.safe_dump(ONCALL_POLICY)),
            alert_rules=write(tmp_path, "oncall-alert-rules.yaml", yaml.safe_dump(ONCALL_RULES)),
        ) as bed:  # fmt: skip
            executor = Executor(bed.engine, name="oncall-executor", election=Election(lease_s=3, renew_deadline_s=2, retry_s=0.5))
            carrying_out = asyncio.create_task(executor.run())
            try:
                await flow(bed, admin, namespace)
            finally:
                executor.stop()
                await asyncio.wait_for(carrying_out, 30)


async def flow(bed: Bed, admin: RestClient, namespace: str) -> None:
    # Alertmanager's webhook → the proposal in the on-call channel, as gpuctl-alerts via the alert, with buttons.
    (post,) = await poll(lambda: posts(bed.slack, f"{namespace}/idle-0 holds an idle GPU"), timeout_s=120,
                         what="the alert's proposal")  # fmt: skip
    shown = blocks_text(post)
    assert "<!subteam^S0ONCALL1>" in shown and "*TestGpuIdle* firing (warning)" in shown
    assert f"Pod/{namespace}/idle-0" in shown and "gpuctl-alerts (gpu-remediation) via alert" in shown
    assert "Awaiting approval" in shown and "role reclaim-approvers (group team-b)" in shown
    run = next(e["value"] for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == APPROVE_ACTION)  # fmt: skip

    # user-b clicks Approve (a signed interactivity request): the message says who approved, then the result.
    click = await bed.sender.click(APPROVE_ACTION, run, user_id=SLACK_B)
    assert click.status == 200
    approved = await bed.slack.wait_for_response(click.response_id)
    assert "*Approved*: approved by user-b" in blocks_text(approved)
    ended = await poll(lambda: [r for r in bed.slack.responses(click.response_id) if "Succeeded" in blocks_text(r)],
                       timeout_s=120, what="the verified result in Slack")  # fmt: skip
    result = blocks_text(ended[0])
    assert "approved by user-b" in result and f"/gpu audit {run}" in result

    # The pod is gone: evicted through the real API server's Eviction API, as gpuctl-alerts.
    await poll(lambda: admin.get("Pod", "idle-0", namespace), lambda r: r.status == 404, what="idle-0 to be gone")
    assert (await bed.engine.store.get(run)).status.phase == "Succeeded"

    # The audit log: who asked (the alert, as its policy identity), who approved, what changed, verified.
    found = await records(bed.folder, run)
    by_kind = {r.kind.value: r for r in found}
    asked = by_kind["requested"].actor
    assert asked is not None and asked.identity.user == "gpuctl-alerts" and asked.via == "alert"
    assert asked.detail.startswith("TestGpuIdle ")
    approver = by_kind["approved"].actor
    assert approver is not None and approver.identity == Identity(user="user-b", groups=("team-b",))
    assert approver.via == "slack"
    evictions = [r.payload for r in found if r.kind.value == "api_call" and r.payload["path"].endswith("/idle-0/eviction")
                 and not r.payload["dry_run"]]  # fmt: skip
    assert [(e["status"], e["acting_as"]["user"]) for e in evictions] == [(201, "gpuctl-alerts")]
    assert kinds(found)[-1] == "completed" and "verified" in kinds(found)
    audit = blocks_text(await ask(bed, f"audit {run}"))
    assert "approved" in audit and "user-b (team-b) via slack" in audit and "gpuctl-alerts" in audit
    await audit_intact(bed.folder)


async def ask(bed: Bed, text: str) -> dict[str, Any]:
    sent = await bed.sender.command(text, user_id=SLACK_B)
    assert sent.status == 200, sent.body
    return await bed.slack.wait_for_response(sent.response_id)
